//! The one field of an X.509 certificate that `check` needs and rustls does
//! not hand out: the end of its validity (notAfter).
//!
//! Why a few lines of DER here rather than `x509-parser`: that crate and
//! its parser stack (nom, asn1-rs, der-parser, time) would be most of the
//! client's TLS build, on Linux and in the Windows cross-build, for one
//! date. The path to it is fixed by RFC 5280 (Certificate → tbsCertificate
//! → validity → notAfter), and rustls has already checked the certificate's
//! encoding by the time this reads it; anything unexpected gives `None`,
//! and `check` then reports no expiry rather than a wrong one.

/// notAfter of a DER certificate, in seconds since the Unix epoch.
pub(super) fn unix_seconds(certificate: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    const EXPLICIT_VERSION: u8 = 0xa0;
    let (SEQUENCE, certificate, _) = element(certificate)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    // [0] version (absent in v1), serialNumber, signature, issuer, validity.
    let (tag, _, after_version) = element(tbs)?;
    let mut fields = if tag == EXPLICIT_VERSION {
        after_version
    } else {
        tbs
    };
    for _ in 0..3 {
        fields = element(fields)?.2;
    }
    let (SEQUENCE, validity, _) = element(fields)? else {
        return None;
    };
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    parse_time(tag, time)
}

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (length, after) = rest.split_at(octets);
        rest = after;
        length
            .iter()
            .fold(0usize, |sum, &byte| sum << 8 | usize::from(byte))
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), the two forms RFC 5280 allows, as Unix seconds.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |at: usize| rest.get(at..at + 2)?.parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_time_forms_are_read() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, b"20000301000000Z"), Some(951_868_800));
        assert_eq!(parse_time(0x18, b"99991231235959Z"), Some(253_402_300_799));
        assert_eq!(parse_time(0x17, b"700101000000"), None);
        assert_eq!(parse_time(0x18, b"700101000000Z"), None);
        assert_eq!(parse_time(0x17, b"701301000000Z"), None);
    }

    #[test]
    fn not_after_is_found_past_the_version_and_issuer() {
        // A hand-made skeleton: version, serial, algorithm, issuer, then
        // validity (notBefore 2024-01-01, notAfter 2025-01-01).
        let validity = [
            &[0x30, 30][..],
            &[0x17, 13],
            b"240101000000Z",
            &[0x17, 13],
            b"250101000000Z",
        ]
        .concat();
        let tbs_fields = [
            &[0xa0, 3, 0x02, 1, 2][..],
            &[0x02, 1, 7],
            &[0x30, 0],
            &[0x30, 0],
            &validity,
        ]
        .concat();
        let tbs = [&[0x30, tbs_fields.len() as u8][..], &tbs_fields].concat();
        let certificate = [&[0x30, 0x81, tbs.len() as u8][..], &tbs].concat();
        assert_eq!(unix_seconds(&certificate), Some(1_735_689_600));
        assert_eq!(unix_seconds(&certificate[..certificate.len() - 1]), None);
    }
}
