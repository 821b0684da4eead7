//! The identities a token names — `sub`, `client_id` (or `azp`) and `jti` — as types that cannot
//! be swapped for one another and cannot hold a value unfit for where they travel: an upstream
//! header (`X-Phigate-Subject`, `X-Phigate-Client-Id`), a log line, a revocation lookup, a link
//! seal. Each is 1 to 255 bytes of printable ASCII with no space at either end: a control
//! character would split a header or a log line, and a receiver trims header values, so the
//! upstream would otherwise act on another identity than the one phigate checked and logged.

/// The longest identity accepted. Real servers send UUIDs, URLs and e-mail addresses well under
/// this; anything longer only makes headers and logs heavier.
const MAX_IDENTITY_BYTES: usize = 255;

/// Defines one identity newtype; the three differ only in what they name.
macro_rules! identity {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        // Shared, not boxed: each request hands its token's identities to the block list's
        // keys, the decision record and the monitor, and a clone is then a count, not a copy.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// `value`, when it has an identity's shape.
            pub fn parse(value: &str) -> Option<Self> {
                is_identity(value).then(|| Self(value.into()))
            }

            /// The value as the token carried it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

identity!(
    /// `sub`: the resource owner, or for a client-credentials token the client itself.
    Subject
);
identity!(
    /// `client_id`, or `azp` from servers that send that instead: the OAuth client.
    ClientId
);
identity!(
    /// `jti`: the token's unique id; logs carry it instead of the token.
    Jti
);

fn is_identity(value: &str) -> bool {
    (1..=MAX_IDENTITY_BYTES).contains(&value.len())
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(value: &str, expected: bool) {
        // One rule for all three: each must agree with the others on every value.
        let parsed = [
            Subject::parse(value).map(|s| s.as_str().to_owned()),
            ClientId::parse(value).map(|c| c.as_str().to_owned()),
            Jti::parse(value).map(|j| j.as_str().to_owned()),
        ];
        let want = expected.then(|| value.to_owned());
        assert_eq!(parsed, [want.clone(), want.clone(), want], "{value:?}");
    }

    #[test]
    fn identities_are_short_printable_ascii_untrimmed() {
        for accepted in [
            "u-1",
            "a",
            "https://as.test/users/1",
            "a b",
            "user@example.org",
            &"x".repeat(255),
        ] {
            check(accepted, true);
        }
        for refused in [
            "",
            " u-1",
            "u-1 ",
            "u\n1",
            "u\t1",
            "u\u{7f}",
            "ü",
            &"x".repeat(256),
        ] {
            check(refused, false);
        }
    }
}
