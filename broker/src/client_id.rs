//! Reversible rewriting of client ids that rumqttd cannot take.
//!
//! rumqttd 0.20's router refuses any client id containing `/`, `+`, `#` or `$` without
//! answering, and the listener then panics on the retry and poisons itself. Real IoT tools use
//! such ids (`site/cabinet-1`, `$SYS-probe`), so the front door rewrites them before rumqttd
//! sees them.
//!
//! Scheme: percent encoding of exactly the bytes `/ + # $ %`, as `%2F %2B %23 %24 %25`
//! (upper-case hex). Encoding `%` itself keeps the mapping injective, so two distinct client
//! ids never collide inside rumqttd and [`decode`] recovers the original from rumqttd's logs.
//! Ids without any of those bytes pass unchanged.

/// Longest client id, in bytes after encoding, that the front door forwards.
///
/// MQTT strings carry a 16-bit length and encoding can triple an id, so without this bound a
/// long id would overflow the length field of the rewritten CONNECT.
pub const MAX_ENCODED_LEN: usize = 1024;

/// Percent-encodes `/ + # $ %` in a client id (see the module docs).
pub fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '$' => out.push_str("%24"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`encode`]; returns `None` for a string `encode` cannot have produced.
pub fn decode(encoded: &str) -> Option<String> {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let code = rest.get(pos + 1..pos + 3)?;
        out.push(match code {
            "2F" => '/',
            "2B" => '+',
            "23" => '#',
            "24" => '$',
            "25" => '%',
            _ => return None,
        });
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_ids_contain_none_of_the_bytes_rumqttd_refuses() {
        let encoded = encode("site/+#$%x");
        assert!(!"/+#$".chars().any(|c| encoded.contains(c)));
        assert_eq!(encoded, "site%2F%2B%23%24%25x");
    }

    #[test]
    fn decode_reverses_encode_and_distinct_ids_stay_distinct() {
        for id in ["plain", "a/b", "a%2Fb", "%", "$SYS/ü+#", ""] {
            assert_eq!(decode(&encode(id)).as_deref(), Some(id));
        }
        assert_ne!(encode("a/b"), encode("a%2Fb"));
    }

    #[test]
    fn decode_rejects_strings_encode_never_produces() {
        assert_eq!(decode("a%4"), None);
        assert_eq!(decode("a%41"), None);
    }
}
