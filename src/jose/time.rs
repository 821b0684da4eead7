//! RFC 7519 §2 NumericDate, read one way for every time phigate takes from a JWT: an access
//! token's `exp`, `nbf` and `iat` and a DPoP proof's `iat`. A value that is not a usable number
//! of seconds is refused, never clamped: a saturated date would land inside or outside a
//! validity window by accident rather than by the issuer's word.

use serde_json::Value;

/// Beyond ±2^53 (about 285 million years) a double no longer holds whole seconds exactly, and
/// no real token is dated there; the integer form is taken across the whole i64 range.
const MAX_FRACTIONAL_SECONDS: f64 = 9.0e15;

/// Seconds since the epoch: a JSON number, finite, within i64, any fraction truncated (toward
/// zero); `None` for anything else.
pub fn numeric_date(value: &Value) -> Option<i64> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(seconds) = number.as_i64() {
        return Some(seconds);
    }
    match number.as_f64() {
        // The bound makes the conversion exact, so `as` never saturates here.
        Some(seconds) if seconds.is_finite() && seconds.abs() < MAX_FRACTIONAL_SECONDS => {
            Some(seconds.trunc() as i64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(value: Value, expected: Option<i64>) {
        assert_eq!(numeric_date(&value), expected, "{value}");
    }

    #[test]
    fn numbers_of_seconds_and_nothing_else() {
        check(json!(1_800_000_000), Some(1_800_000_000));
        check(json!(-1), Some(-1));
        check(json!(0), Some(0));
        check(json!(i64::MAX), Some(i64::MAX));
        check(json!(i64::MIN), Some(i64::MIN));
        check(json!(1_800_000_000.9), Some(1_800_000_000));
        check(json!(-0.5), Some(0));
        check(json!(8.9e15), Some(8_900_000_000_000_000));
        for refused in [
            json!(u64::MAX),
            json!(9.0e15),
            json!(1e300),
            json!(-1e300),
            json!(1e308),
            json!("1800000000"),
            json!(null),
            json!(true),
            json!([1_800_000_000]),
            json!({"seconds": 1}),
        ] {
            check(refused, None);
        }
    }
}
