//! Sealed links: URLs the upstream handed to one client that phigate cannot authorise from their
//! shape — opaque page tokens (HAPI's `[base]?_getpages=…`), a Bulk Data export's status URL and
//! its output files. phigate appends an HMAC seal over the URL, its kind, an expiry and the
//! identity that received it (issuer, client, subject, launch patient), so the URL can be
//! followed through phigate only by that identity, until it expires, and only as what it was
//! (a page stays a page). Any replica holding the same secret can open a seal. It never decides
//! what an opened link may return: the permit built for it still checks the answer.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::mac::MacKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The query parameter that carries a seal; phigate removes it before forwarding.
pub const SEAL_PARAM: &str = "_phigate_seal";

/// How long a sealed link stays valid (an export can run for hours).
const LIFETIME_SECONDS: u64 = 24 * 60 * 60;

/// What a sealed link is, and so what following it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A page of search results, fetched with `GET`, checked like the search it came from.
    Page,
    /// A Bulk Data status URL: polled with `GET`, cancelled with `DELETE`.
    ExportStatus,
    /// A Bulk Data output file, fetched with `GET`.
    ExportFile,
}

impl LinkKind {
    fn code(self) -> char {
        match self {
            Self::Page => 'p',
            Self::ExportStatus => 's',
            Self::ExportFile => 'f',
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "p" => Some(Self::Page),
            "s" => Some(Self::ExportStatus),
            "f" => Some(Self::ExportFile),
            _ => None,
        }
    }

    /// What following the link is, for logs and `explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Page => "sealed page",
            Self::ExportStatus => "sealed export status",
            Self::ExportFile => "sealed export file",
        }
    }
}

/// Whom a link was handed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder<'a> {
    /// The token's issuer.
    pub issuer: &'a str,
    /// `client_id`.
    pub client: Option<&'a str>,
    /// `sub`.
    pub subject: Option<&'a str>,
    /// The launch patient.
    pub patient: Option<&'a str>,
}

/// A link opened by its holder: what it is, and its query without the seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedLink {
    /// What the link is.
    pub kind: LinkKind,
    /// The query exactly as the upstream wrote it.
    pub query: String,
}

/// Seals and opens links.
pub struct LinkSealer {
    key: MacKey,
}

impl LinkSealer {
    /// A sealer keyed with `secret` (share it between replicas).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: MacKey::new(secret),
        }
    }

    /// A sealer with a random secret (one replica).
    pub fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        MacKey::random().map(|key| Self { key })
    }

    /// `path` and `query` with a seal appended, for `holder`.
    pub fn seal(&self, kind: LinkKind, holder: &Holder<'_>, path: &str, query: &str) -> String {
        self.seal_at(kind, holder, path, query, now())
    }

    fn seal_at(
        &self,
        kind: LinkKind,
        holder: &Holder<'_>,
        path: &str,
        query: &str,
        now: u64,
    ) -> String {
        let expires = now.saturating_add(LIFETIME_SECONDS);
        let tag = self.tag(kind, expires, holder, path, query);
        let seal = format!("{}.{expires}.{tag}", kind.code());
        let separator = if query.is_empty() { "" } else { "&" };
        format!("{path}?{query}{separator}{SEAL_PARAM}={seal}")
    }

    /// Opens the seal in `query` (exactly one) for `holder` requesting `path`; `None` when it
    /// is missing, forged, expired, or was sealed for someone else or another URL.
    pub fn open(&self, holder: &Holder<'_>, path: &str, query: &str) -> Option<OpenedLink> {
        self.open_at(holder, path, query, now())
    }

    fn open_at(
        &self,
        holder: &Holder<'_>,
        path: &str,
        query: &str,
        now: u64,
    ) -> Option<OpenedLink> {
        let prefix = format!("{SEAL_PARAM}=");
        let (seals, rest): (Vec<&str>, Vec<&str>) =
            query.split('&').partition(|pair| pair.starts_with(&prefix));
        let [seal] = seals.as_slice() else {
            return None;
        };
        let mut parts = seal[prefix.len()..].splitn(3, '.');
        let kind = LinkKind::from_code(parts.next()?)?;
        let expires: u64 = parts.next()?.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        if expires < now {
            return None;
        }
        let query = rest.join("&");
        let expected = self.tag(kind, expires, holder, path, &query);
        let expected = URL_SAFE_NO_PAD.decode(expected).ok()?;
        // Constant-time comparison through aws-lc-rs.
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected, &tag).ok()?;
        Some(OpenedLink { kind, query })
    }

    fn tag(
        &self,
        kind: LinkKind,
        expires: u64,
        holder: &Holder<'_>,
        path: &str,
        query: &str,
    ) -> String {
        // Newline-separated: none of these fields can hold one (claims are printable ASCII,
        // paths and queries are URI text).
        let message = format!(
            "{}\n{expires}\n{}\n{}\n{}\n{}\n{path}\n{query}",
            kind.code(),
            holder.issuer,
            holder.client.unwrap_or_default(),
            holder.subject.unwrap_or_default(),
            holder.patient.unwrap_or_default(),
        );
        let tag = self.key.sign(message.as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    /// The holder `app-1` acting for `subject`.
    fn holder<'a>(client: &'a str, subject: &'a str) -> Holder<'a> {
        Holder {
            issuer: "https://as.test",
            client: Some(client),
            subject: Some(subject),
            patient: Some("123"),
        }
    }

    fn identity(subject: &str) -> (String, String) {
        ("app-1".to_owned(), subject.to_owned())
    }

    fn split(sealed: &str) -> (&str, &str) {
        sealed.split_once('?').unwrap()
    }

    #[test]
    fn a_sealed_link_opens_only_for_its_holder_its_url_and_its_time() {
        let (u1, u2) = (identity("u-1"), identity("u-2"));
        let sealer = LinkSealer::new(b"a secret of at least thirty-two bytes");
        let sealed = sealer.seal_at(
            LinkKind::Page,
            &holder(&u1.0, &u1.1),
            "/",
            "_getpages=abc&_getpagesoffset=10",
            NOW,
        );
        let (path, query) = split(&sealed);
        assert_eq!(
            sealer.open_at(&holder(&u1.0, &u1.1), path, query, NOW + 60),
            Some(OpenedLink {
                kind: LinkKind::Page,
                query: "_getpages=abc&_getpagesoffset=10".into()
            })
        );
        // Another subject, another path, an edited query, too late, another key, no seal.
        assert_eq!(
            sealer.open_at(&holder(&u2.0, &u2.1), path, query, NOW),
            None
        );
        assert_eq!(
            sealer.open_at(&holder(&u1.0, &u1.1), "/Patient", query, NOW),
            None
        );
        let edited = query.replace("offset=10", "offset=20");
        assert_eq!(
            sealer.open_at(&holder(&u1.0, &u1.1), path, &edited, NOW),
            None
        );
        assert_eq!(
            sealer.open_at(
                &holder(&u1.0, &u1.1),
                path,
                query,
                NOW + LIFETIME_SECONDS + 1
            ),
            None
        );
        let other = LinkSealer::new(b"another secret of thirty-two bytes!!");
        assert_eq!(other.open_at(&holder(&u1.0, &u1.1), path, query, NOW), None);
        assert_eq!(
            sealer.open_at(&holder(&u1.0, &u1.1), path, "_getpages=abc", NOW),
            None
        );
        // A kind cannot be relabelled: the code is part of what was signed.
        let relabelled = query.replace("_phigate_seal=p.", "_phigate_seal=f.");
        assert_eq!(
            sealer.open_at(&holder(&u1.0, &u1.1), path, &relabelled, NOW),
            None
        );
        // Two seals are one too many.
        let doubled = format!("{query}&{}", query.rsplit('&').next().unwrap());
        assert_eq!(
            sealer.open_at(&holder(&u1.0, &u1.1), path, &doubled, NOW),
            None
        );
    }

    #[test]
    fn a_link_without_a_query_is_sealed_too() {
        let svc = identity("svc");
        let sealer = LinkSealer::new(b"a secret of at least thirty-two bytes");
        let sealed = sealer.seal_at(
            LinkKind::ExportFile,
            &holder(&svc.0, &svc.1),
            "/bulk/1.ndjson",
            "",
            NOW,
        );
        let (path, query) = split(&sealed);
        assert!(query.starts_with("_phigate_seal=f."));
        let opened = sealer
            .open_at(&holder(&svc.0, &svc.1), path, query, NOW)
            .unwrap();
        assert_eq!(opened.kind, LinkKind::ExportFile);
        assert_eq!(opened.query, "");
    }
}
