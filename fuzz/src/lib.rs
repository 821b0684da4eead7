//! What the fuzz targets share: a request written as text (`request`), the invariant every
//! permit must keep (`forwarding`), and compact JWSs built from JSON the fuzzer writes (`jws`),
//! so that mutations reach claim checks instead of dying in base64. Test code only: nothing
//! here is part of phigate.

pub mod forwarding;
pub mod jws;
pub mod request;
