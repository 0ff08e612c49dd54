//! The subject distinguished name of an X.509 certificate as Kafka sees it: Java's
//! `X500Principal.getName()` (RFC 2253), which Kafka's `ssl.principal.mapping.rules` match.
//!
//! RDNs are written most specific first (the reverse of their DER order), separated by `,`
//! without spaces; the AVAs of a multi-valued RDN are joined with `+`. The attribute types
//! RFC 2253 and Java name (CN, C, L, ST, O, OU, STREET, DC, UID) appear as keywords, every other
//! type as its dotted OID with the value's DER encoding in hex (`1.2.840.113549.1.9.1=#1603...`).
//! String values escape `,`, `=`, `+`, `<`, `>`, `#`, `;`, `"` and `\` with a backslash, and a
//! leading or trailing space, as Java does. Only as much DER as the subject needs is read (the
//! TLS stack has already verified the certificate).

/// Why a certificate's subject cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub struct X500Error(&'static str);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0;

/// One DER element: its tag, its contents and its whole encoding.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    encoding: &'a [u8],
}

/// Read one element off the front of `input`.
fn next<'a>(input: &mut &'a [u8]) -> Result<Tlv<'a>, X500Error> {
    let all = *input;
    let (&tag, rest) = all.split_first().ok_or(X500Error("truncated"))?;
    if tag & 0x1F == 0x1F {
        return Err(X500Error("multi-byte tags are not used in certificates"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(X500Error("truncated length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(X500Error("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(X500Error("truncated contents"));
    }
    let header = all.len() - rest.len();
    *input = &rest[len..];
    Ok(Tlv {
        tag,
        contents: &rest[..len],
        encoding: &all[..header + len],
    })
}

fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, X500Error> {
    let tlv = next(input)?;
    if tlv.tag == tag {
        Ok(tlv)
    } else {
        Err(X500Error(what))
    }
}

/// The dotted form of an OID's contents.
fn oid_string(bytes: &[u8]) -> Result<String, X500Error> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        value = value
            .checked_mul(128)
            .ok_or(X500Error("OID arc too large"))?
            | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == bytes.len() {
            return Err(X500Error("truncated OID"));
        }
    }
    if arcs.is_empty() {
        return Err(X500Error("empty OID"));
    }
    Ok(arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// RFC 2253's and Java's keyword of an attribute type.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The text of a DER string value (None: not a string type).
fn string_value(tlv: &Tlv<'_>) -> Option<String> {
    match tlv.tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0C | 0x13 | 0x16 | 0x12 | 0x1A => {
            std::str::from_utf8(tlv.contents).ok().map(str::to_string)
        }
        // TeletexString (as Latin-1, what Java does in practice)
        0x14 => Some(tlv.contents.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE
        0x1E => {
            let units: Vec<u16> = tlv
                .contents
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE
        0x1C => tlv
            .contents
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 2253 escaping as Java's `AVA.toRFC2253String`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        if ",=+<>#;\"\\".contains(c) || (c == ' ' && (i == 0 || i == last)) {
            out.push('\\');
        }
        if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The subject of a DER-encoded X.509 certificate in RFC 2253 form, as Java's
/// `X500Principal.getName()` writes it (e.g. `CN=edge-01,OU=devices,O=Acme`).
pub fn subject_dn(cert_der: &[u8]) -> Result<String, X500Error> {
    let mut input = cert_der;
    let cert = expect(&mut input, SEQUENCE, "not a certificate")?;
    let mut cert_body = cert.contents;
    let tbs = expect(&mut cert_body, SEQUENCE, "no tbsCertificate")?;
    let mut tbs = tbs.contents;
    let mut first = next(&mut tbs)?;
    if first.tag == VERSION {
        first = next(&mut tbs)?;
    }
    if first.tag != INTEGER {
        return Err(X500Error("no serial number"));
    }
    expect(&mut tbs, SEQUENCE, "no signature algorithm")?;
    expect(&mut tbs, SEQUENCE, "no issuer")?;
    expect(&mut tbs, SEQUENCE, "no validity")?;
    let subject = expect(&mut tbs, SEQUENCE, "no subject")?;
    let mut rdns = Vec::new();
    let mut name = subject.contents;
    while !name.is_empty() {
        let set = expect(&mut name, SET, "an RDN is not a SET")?;
        let mut avas = Vec::new();
        let mut members = set.contents;
        while !members.is_empty() {
            let ava = expect(&mut members, SEQUENCE, "an attribute is not a SEQUENCE")?;
            let mut ava = ava.contents;
            let oid = oid_string(expect(&mut ava, OID, "no attribute type")?.contents)?;
            let value = next(&mut ava)?;
            avas.push(match (keyword(&oid), string_value(&value)) {
                (Some(k), Some(v)) => format!("{k}={}", escape(&v)),
                (Some(k), None) => format!("{k}=#{}", hex(value.encoding)),
                (None, _) => format!("{oid}=#{}", hex(value.encoding)),
            });
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_in_java_rfc2253_form() {
        let mut params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        dn.push(rcgen::DnType::OrganizationalUnitName, "devices");
        dn.push(rcgen::DnType::CommonName, " edge=01 ");
        dn.push(
            rcgen::DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            rcgen::DnValue::Ia5String("a@b".try_into().unwrap()),
        );
        params.distinguished_name = dn;
        assert_eq!(
            subject_dn(&cert(params)).unwrap(),
            "1.2.840.113549.1.9.1=#1603614062,CN=\\ edge\\=01\\ ,OU=devices,O=Acme\\, Inc.,C=DE"
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(subject_dn(b"").is_err());
        assert!(subject_dn(&[0x30, 0x05, 0x30]).is_err());
        assert!(subject_dn(&[0x02, 0x01, 0x00]).is_err());
        let mut params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let der = cert(params);
        assert_eq!(subject_dn(&der).unwrap(), "");
        assert!(subject_dn(&der[..der.len() / 2]).is_err());
    }
}
