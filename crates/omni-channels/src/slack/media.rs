//! The customer's file from Slack: a `file_share` message's `files[]` carry `url_private` (the
//! adapter keeps it as the attachment's reference), and `GET url_private` with the app's bot
//! token as `Authorization: Bearer` serves the bytes (the token needs `files:read`). Slack serves
//! files from `files.slack.com`; a request without a valid token gets Slack's HTML sign-in page,
//! so the router checks what is served against the `mimetype` and `size` the event announced.
//!
//! A file shared from another workspace may come as a bare id (`file_access:
//! check_file_info`); that needs `files.info` first and is not fetched (the ticket lists it).
//!
//! Pure: the request is built here; the router does the HTTP.
//!
//! Documents followed: <https://api.slack.com/types/file#authentication> (`url_private`,
//! `url_private_download`, the bearer token), <https://api.slack.com/events/message/file_share>.

use crate::media::{Auth, Download, url_under};

/// Where Slack serves `url_private` (https only).
pub const FILE_HOSTS: [&str; 1] = ["files.slack.com"];

/// The download of a file whose reference is its `url_private` (or `url_private_download`):
/// a Slack file URL under `/files-pri/`, fetched with the bot token.
pub fn download(reference: &str, bot_token: &str) -> Result<Download, String> {
    url_under(reference, "/files-pri/").map_err(|why| format!("not a Slack file URL: {why}"))?;
    Ok(Download {
        url: reference.to_owned(),
        auth: Auth::Bearer(bot_token.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Normalize as _;
    use crate::slack::Slack;
    use crate::webhook::WebhookAdapter as _;

    const FILE_SHARE: &str = include_str!("fixtures/file-share.json");

    #[test]
    fn the_reference_of_a_shared_file_downloads_with_the_bot_token() {
        let account = Slack.development_account();
        let raw = crate::kit::records(&Slack, &account, "application/json", FILE_SHARE.as_bytes()).swap_remove(0);
        let event = Slack.normalize(&raw, &crate::NoKnownEvents).unwrap().unwrap();
        let Some(omni_proto::v1::attachment::Content::Reference(reference)) = &event.attachments[0].content else {
            panic!("a reference: {:?}", event.attachments[0]);
        };
        let download = download(reference, "xoxb-1").unwrap();
        assert_eq!(download.url, "https://files.slack.com/files-pri/T061EG9R6-F0RDC39U1/ghostrap.png");
        assert_eq!(download.auth, Auth::Bearer("xoxb-1".into()));
    }

    #[test]
    fn only_private_file_urls_are_downloads() {
        let download_url = "https://files.slack.com/files-pri/T061EG9R6-F0RDC39U1/download/ghostrap.png";
        assert!(download(download_url, "xoxb-1").is_ok(), "url_private_download");
        assert!(download("F0RDC39U1", "xoxb-1").is_err(), "a bare file id");
        let permalink = "https://episod-slackform.slack.com/files/U061F7AUR/F0RDC39U1/ghostrap.png";
        assert!(download(permalink, "xoxb-1").is_err(), "a permalink is a web page");
        assert!(download("https://files.slack.com/files-tmb/T061EG9R6-F0RDC39U1-f8/ghostrap_64.png", "x").is_err());
    }
}
