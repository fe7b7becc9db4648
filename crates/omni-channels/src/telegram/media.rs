//! The customer's photo, voice note or document from the Telegram Bot API: a message carries a
//! `file_id`; `getFile` (with the bot's token) gives a `file_path`, valid for at least an hour,
//! and `<api>/file/bot<token>/<file_path>` serves the bytes (bots may download up to 20 MB).
//! Telegram announces no hash: the size `getFile` gives is checked instead.
//!
//! Pure: the requests are built and the answers read here; the router does the HTTP.
//!
//! Documents followed: <https://core.telegram.org/bots/api#getfile>,
//! <https://core.telegram.org/bots/api#file>.

use serde_json::Value;

/// The most a bot may download, in bytes.
pub const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;

/// The `getFile` URL for `file_id`; `None` for an id that is not one (ids are URL-safe base64).
pub fn get_file_url(api_base_url: &str, bot_token: &str, file_id: &str) -> Option<String> {
    let safe = !file_id.is_empty() && file_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    safe.then(|| format!("{}/bot{bot_token}/getFile?file_id={file_id}", api_base_url.trim_end_matches('/')))
}

/// The download URL and size from a `getFile` answer.
pub fn read_file(api_base_url: &str, bot_token: &str, body: &[u8]) -> Result<(String, Option<u64>), String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("the getFile answer is not JSON: {e}"))?;
    if answer["ok"] != true {
        return Err(format!(
            "getFile refused: {}",
            answer["description"].as_str().unwrap_or("no description")
        ));
    }
    let path = answer["result"]["file_path"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or("getFile gave no file_path")?;
    if path.starts_with('/') || path.split('/').any(|segment| segment == "..") {
        return Err("getFile gave an unusable file_path".into());
    }
    let url = format!("{}/file/bot{bot_token}/{path}", api_base_url.trim_end_matches('/'));
    Ok((url, answer["result"]["file_size"].as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_file_takes_only_a_file_id() {
        assert_eq!(
            get_file_url("https://api.telegram.org/", "1:x", "AgACAgQAAxkBAAIBZ2Z-abc_DEF").as_deref(),
            Some("https://api.telegram.org/bot1:x/getFile?file_id=AgACAgQAAxkBAAIBZ2Z-abc_DEF")
        );
        assert_eq!(get_file_url("https://api.telegram.org", "1:x", "a&chat_id=2"), None);
        assert_eq!(get_file_url("https://api.telegram.org", "1:x", "https://evil.example/x"), None);
    }

    #[test]
    fn the_download_is_on_the_api_host_under_the_bot() {
        let answer =
            br#"{"ok":true,"result":{"file_id":"AgAC","file_unique_id":"AQAD","file_size":84211,"file_path":"photos/file_7.jpg"}}"#;
        assert_eq!(
            read_file("https://api.telegram.org", "1:x", answer),
            Ok(("https://api.telegram.org/file/bot1:x/photos/file_7.jpg".into(), Some(84_211)))
        );
        assert!(
            read_file(
                "https://api.telegram.org",
                "1:x",
                br#"{"ok":false,"description":"Bad Request: file is too big"}"#
            )
            .is_err()
        );
        let escape = br#"{"ok":true,"result":{"file_path":"../../bot2:y/x"}}"#;
        assert!(read_file("https://api.telegram.org", "1:x", escape).is_err());
    }
}
