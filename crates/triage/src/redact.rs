//! Secret redaction: pre-signed upload data, API keys and anything derived from them never reach a log,
//! a report, the journal or the terminal.

use secrecy::{ExposeSecret, SecretString};

/// What replaces a secret in any printed text.
pub const REDACTED: &str = "<redacted>";

/// Replaces every known secret (and every value after a known secret-bearing flag) with [`REDACTED`].
///
/// Cheap to clone; the secrets stay inside `SecretString`s and `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Query parameters of pre-signed URLs whose value is a secret (AWS SigV4, Azure SAS, GCS): their value is
/// redacted wherever it appears, decoded or not.
const SECRET_QUERY_PARAMS: &[&str] = &[
    "X-Amz-Signature=",
    "X-Amz-Credential=",
    "X-Amz-Security-Token=",
    "X-Goog-Signature=",
    "X-Goog-Credential=",
    "sig=",
];

/// Flags whose value is a secret whatever the collector (Cado Host, UAC, KAPE).
const SECRET_FLAGS: &[&str] = &[
    "--presigned_data",
    "--presigned_url",
    "--secret_key",
    "--access_key",
    "--sas",
    "--aws-s3-presigned-url",
    "--azure-storage-sas-url",
    "--s3url",
    "--s3k",
    "--s3s",
    "--s3st",
    "--asu",
];

impl Redactor {
    /// An empty redactor (still redacts the values of known secret flags).
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret and the forms a collector's log may echo it in: percent-decoded (a URL printed decoded)
    /// and form-decoded (`+` as space). Empty and very short values (under 4 characters) are ignored because
    /// redacting them would mangle ordinary text.
    pub fn add(&mut self, secret: &SecretString) {
        let raw = secret.expose_secret();
        for decoded in [
            percent_encoding::percent_decode_str(raw).decode_utf8_lossy(),
            percent_encoding::percent_decode_str(&raw.replace('+', " ")).decode_utf8_lossy(),
        ] {
            if decoded != raw {
                self.add_one(&SecretString::from(decoded.into_owned()));
            }
        }
        self.add_one(secret);
    }

    fn add_one(&mut self, secret: &SecretString) {
        if secret.expose_secret().len() >= 4
            && !self
                .secrets
                .iter()
                .any(|s| s.expose_secret() == secret.expose_secret())
        {
            self.secrets.push(secret.clone());
            // longest first, so a secret containing another is replaced whole
            self.secrets
                .sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
        }
    }

    /// Adds a secret and, when it is base64-encoded JSON (as Cado pre-signed data is), the strings inside it
    /// too: the pre-signed URLs and their query strings, which a collector's log may quote decoded.
    pub fn add_with_decoded(&mut self, secret: &SecretString) {
        use base64::Engine as _;
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        self.add(secret);
        let raw = secret.expose_secret().trim();
        let Some(bytes) = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(raw).ok())
        else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let mut stack = vec![&v];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::String(s) if s.len() >= 16 => {
                    self.add_str(s);
                    if let Some((_, query)) = s.split_once('?') {
                        self.add_str(query);
                    }
                }
                serde_json::Value::Array(a) => stack.extend(a),
                serde_json::Value::Object(o) => stack.extend(o.values()),
                _ => {}
            }
        }
    }

    /// Adds a secret given as plain text (for values derived from secrets, e.g. an encoded command).
    pub fn add_str(&mut self, secret: &str) {
        self.add(&SecretString::from(secret.to_string()));
    }

    /// Number of registered secrets.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether no secret is registered.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The text with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        redact_query_params(&redact_flags(&self.redact_known(text)))
    }

    /// The text with every registered secret replaced, without the flag and query-parameter rules (for
    /// text built from already redacted parts, where those rules would redact the placeholder again).
    pub fn redact_known(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            let s = s.expose_secret();
            if out.contains(s) {
                out = out.replace(s, REDACTED);
            }
        }
        out
    }
}

/// Replaces the value of each of [`SECRET_QUERY_PARAMS`] (up to the next `&`, blank or quote).
fn redact_query_params(text: &str) -> String {
    let mut out = text.to_string();
    for param in SECRET_QUERY_PARAMS {
        let mut from = 0;
        while let Some(pos) = out[from..].find(param) {
            let at = from + pos;
            let start = at + param.len();
            // `sig=` only as a whole parameter name (after `?`, `&` or a blank), not inside `X-Amz-sig=`
            let whole = at == 0 || out[..at].ends_with(['?', '&', ' ', '\t', '\'', '"']);
            let len = out[start..]
                .find(['&', ' ', '\t', '\n', '\r', '\'', '"', '|', ';'])
                .unwrap_or(out.len() - start);
            if whole && len > 0 && &out[start..start + len] != REDACTED {
                out.replace_range(start..start + len, REDACTED);
                from = start + REDACTED.len();
            } else {
                from = start;
            }
        }
    }
    out
}

/// Replaces the value following each of [`SECRET_FLAGS`] (`--flag value`, `--flag=value`, quoted or not).
fn redact_flags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: loop {
        // earliest flag occurrence
        let mut best: Option<(usize, &str)> = None;
        for flag in SECRET_FLAGS {
            let mut from = 0;
            while let Some(pos) = rest[from..].find(flag) {
                let at = from + pos;
                let end = at + flag.len();
                let boundary_after = rest[end..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == ' ' || c == '=' || c == '\t');
                let boundary_before =
                    at == 0 || rest[..at].ends_with([' ', '\t', '\'', '"', '(', ';']);
                if boundary_after && boundary_before {
                    if best.is_none_or(|(b, _)| at < b) {
                        best = Some((at, flag));
                    }
                    break;
                }
                from = end;
            }
        }
        let Some((at, flag)) = best else {
            out.push_str(rest);
            break 'outer;
        };
        let end = at + flag.len();
        out.push_str(&rest[..end]);
        let after = &rest[end..];
        let sep_len = after.len() - after.trim_start_matches([' ', '\t', '=']).len();
        out.push_str(&after[..sep_len]);
        let value = &after[sep_len..];
        let (consumed, quote) = match value.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let close = value[1..].find(q).map(|i| i + 2).unwrap_or(value.len());
                (close, Some(q))
            }
            // an unquoted value runs to the next blank: a pre-signed URL holds `&`, `;` and `)` may follow it
            // in a log line but never end its query string early
            _ => (
                value
                    .find([' ', '\t', '\n', '\r', '|'])
                    .unwrap_or(value.len()),
                None,
            ),
        };
        if consumed > 0 {
            if let Some(q) = quote {
                out.push(q);
                out.push_str(REDACTED);
                out.push(q);
            } else {
                out.push_str(REDACTED);
            }
        }
        rest = &value[consumed..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_replaced_longest_first() {
        let mut r = Redactor::new();
        r.add(&SecretString::from("eyJ1cmwiOiJodHRwczovL2J1Y2tldCJ9"));
        r.add_str("eyJ1cmwi");
        r.add_str("ab"); // too short: ignored
        assert_eq!(r.len(), 2);
        let out = r.redact("run eyJ1cmwiOiJodHRwczovL2J1Y2tldCJ9 and eyJ1cmwiXYZ ab");
        assert_eq!(out, "run <redacted> and <redacted>XYZ ab");
    }

    #[test]
    fn secret_flag_values_are_replaced_even_when_unknown() {
        let r = Redactor::new();
        assert_eq!(
            r.redact(r#"./cado-host --presigned_data "abc def" --verbose"#),
            r#"./cado-host --presigned_data "<redacted>" --verbose"#
        );
        assert_eq!(
            r.redact("uac --aws-s3-presigned-url=https://x/y?sig=1 -p ir"),
            "uac --aws-s3-presigned-url=<redacted> -p ir"
        );
        assert_eq!(
            r.redact("kape --s3url 'https://b/k?X-Amz=1'; echo"),
            "kape --s3url '<redacted>'; echo"
        );
        assert_eq!(r.redact("x --presigned_dataX y"), "x --presigned_dataX y");
        assert_eq!(r.redact("no secrets here"), "no secrets here");
    }

    #[test]
    fn urls_inside_base64_json_presigned_data_are_redacted() {
        use base64::Engine as _;
        let url = "https://bucket.s3.amazonaws.com/up/k.zip?X-Amz-Signature=deadbeef1234";
        let json = format!(r#"{{"url":"{url}","storage":"aws"}}"#);
        let data = base64::engine::general_purpose::STANDARD.encode(json);
        let mut r = Redactor::new();
        r.add_with_decoded(&SecretString::from(data.clone()));
        let out = r.redact(&format!("[ERROR] - upload to {url} refused; data {data}"));
        assert!(!out.contains("X-Amz-Signature=deadbeef"), "{out}");
        assert!(!out.contains(&data), "{out}");
        let out = r.redact("retrying X-Amz-Signature=deadbeef1234 with aws");
        assert_eq!(out, "retrying <redacted> with aws");
        // not base64 JSON: only the value itself
        let mut r = Redactor::new();
        r.add_with_decoded(&SecretString::from("plain-api-key-value"));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut r = Redactor::new();
        r.add_str("super-secret-value");
        let dbg = format!("{r:?}");
        assert_eq!(dbg, "Redactor { secrets: 1 }");
    }

    /// A collector log that prints the pre-signed URL decoded, or only its query string: nothing of the
    /// signature or the credential shows. Unquoted flag values run past `&`.
    #[test]
    fn decoded_echoes_and_query_strings_are_redacted() {
        let url = "https://b.s3.amazonaws.com/k.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261202%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261202T000000Z&X-Amz-Signature=0123456789abcdef0123456789abcdef&x-id=PutObject%20Obj+1";
        let mut r = Redactor::new();
        r.add_str(url);
        let decoded = percent_encoding::percent_decode_str(url)
            .decode_utf8()
            .unwrap()
            .into_owned();
        assert_ne!(decoded, url);
        assert_eq!(
            r.redact(&format!("PUT {decoded} -> 403")),
            "PUT <redacted> -> 403"
        );
        let form = decoded.replace('+', " ");
        assert_eq!(r.redact(&format!("url={form}")), "url=<redacted>");
        // a part of it the registry never saw whole: the signature parameter
        let out = Redactor::new().redact(
            "retry X-Amz-Credential=AKIAEXAMPLE/20261202/us-east-1/s3/aws4_request&X-Amz-Signature=0123456789abcdef done",
        );
        assert_eq!(
            out,
            "retry X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted> done"
        );
        assert_eq!(
            Redactor::new().redact("https://a.blob.core.windows.net/c?sv=2022&sig=abc%2Bdef&se=x"),
            "https://a.blob.core.windows.net/c?sv=2022&sig=<redacted>&se=x"
        );
        // an unquoted flag value keeps going past `&`
        assert_eq!(
            Redactor::new().redact("uac --aws-s3-presigned-url https://b/k?a=1&b=2&c=3 -p ir"),
            "uac --aws-s3-presigned-url <redacted> -p ir"
        );
    }
}
