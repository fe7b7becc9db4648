//! The customer's MMS picture or file from Twilio: an incoming message carries `NumMedia`,
//! `MediaUrl{N}` and `MediaContentType{N}` (the adapter keeps each URL as an attachment's
//! reference, with its type). The URL is the Media resource,
//! `https://api.twilio.com/2010-04-01/Accounts/<AccountSid>/Messages/<MessageSid>/Media/<MediaSid>`;
//! `GET` with HTTP Basic (Account SID and Auth Token) answers with a redirect to a short-lived URL
//! on Twilio's media CDN (`mms.twiliocdn.com`; media stored before HTTP auth was enforced on
//! `s3-external-1.amazonaws.com`), which serves the bytes with the announced type. The router
//! follows that redirect only to the configured hosts, and sends the credentials to the API only
//! (never along a redirect to another host). Twilio documents that a media URL may answer `404`
//! for a moment after the webhook while the media propagates: that is retried.
//!
//! Pure: the request is built here; the router does the HTTP.
//!
//! Documents followed: <https://www.twilio.com/docs/messaging/guides/webhook-request> (`MediaUrl{N}`),
//! <https://www.twilio.com/docs/messaging/api/media-resource> (the Media resource, HTTP Basic),
//! Twilio's help articles "Protect Media Access with HTTP Basic Authentication for Programmable
//! Messaging" (the CDN hosts) and "Intermittent 404 Errors When Accessing Media URLs".

use crate::media::{Auth, Download, url_under};

/// Twilio's REST API.
pub const API_BASE_URL: &str = "https://api.twilio.com";

/// Where Twilio's Media resource redirects to (https only).
pub const MEDIA_HOSTS: [&str; 2] = ["mms.twiliocdn.com", "s3-external-1.amazonaws.com"];

/// The download of `MediaUrl{N}`: a Media resource of `account_sid` on the API at
/// `api_base_url`, with HTTP Basic; anything else is refused (the credentials go nowhere else).
pub fn download(reference: &str, api_base_url: &str, account_sid: &str, auth_token: &str) -> Result<Download, String> {
    let url = url_under(reference, "/2010-04-01/Accounts/").map_err(|why| format!("not a Twilio media URL: {why}"))?;
    let api = http::Uri::try_from(api_base_url).map_err(|_| "the API base URL is not a URL".to_owned())?;
    if url.scheme() != api.scheme() || url.authority() != api.authority() {
        return Err("the media URL is not on Twilio's API".to_owned());
    }
    let segments: Vec<&str> = url.path().split('/').skip(3).collect();
    let [account, "Messages", message, "Media", media] = segments[..] else {
        return Err("the media URL is not a Media resource".to_owned());
    };
    if account != account_sid {
        return Err("the media URL is of another Twilio account".to_owned());
    }
    if url.query().is_some() || !sid(message, &["MM", "SM"]) || !sid(media, &["ME"]) {
        return Err("the media URL is not a Media resource".to_owned());
    }
    Ok(Download {
        url: reference.to_owned(),
        auth: Auth::Basic {
            user: account_sid.to_owned(),
            password: auth_token.to_owned(),
        },
    })
}

/// A Twilio SID: one of `prefixes` and 32 hex digits.
fn sid(value: &str, prefixes: &[&str]) -> bool {
    let prefix = value.get(..2).unwrap_or_default();
    value.len() == 34 && prefixes.contains(&prefix) && value.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Normalize as _;
    use crate::twilio_sms::TwilioSms;
    use crate::webhook::WebhookAdapter as _;

    const SID: &str = "AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f";
    const MEDIA: &str = "https://api.twilio.com/2010-04-01/Accounts/AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f/Messages/MM6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9";

    #[test]
    fn every_mms_medium_downloads_from_the_api_with_basic_auth() {
        let account = TwilioSms.development_account();
        let body = include_bytes!("fixtures/incoming-mms.form");
        let raw = crate::kit::records(&TwilioSms, &account, "application/x-www-form-urlencoded", body).swap_remove(0);
        let event = TwilioSms.normalize(&raw, &crate::NoKnownEvents).unwrap().unwrap();
        let downloads: Vec<Download> = event
            .attachments
            .iter()
            .map(|file| match &file.content {
                Some(omni_proto::v1::attachment::Content::Reference(url)) => download(url, API_BASE_URL, SID, "secret").unwrap(),
                other => panic!("a reference: {other:?}"),
            })
            .collect();
        assert_eq!(downloads.len(), 2, "MediaUrl0 and MediaUrl1");
        assert_eq!(downloads[0].url, MEDIA);
        let basic = Auth::Basic {
            user: SID.into(),
            password: "secret".into(),
        };
        assert!(downloads.iter().all(|d| d.auth == basic));
    }

    #[test]
    fn only_media_resources_of_the_account_on_the_api_are_downloads() {
        assert!(download(MEDIA, "http://127.0.0.1:8095", SID, "s").is_err(), "another API origin");
        let other = MEDIA.replace(SID, "AC00000000000000000000000000000000");
        assert!(download(&other, API_BASE_URL, SID, "s").is_err(), "another account");
        let listing = MEDIA.rsplit_once('/').unwrap().0.to_owned() + ".json";
        assert!(download(&listing, API_BASE_URL, SID, "s").is_err(), "the media list");
        assert!(download(&format!("{MEDIA}/../../Calls"), API_BASE_URL, SID, "s").is_err());
        assert!(download(&format!("{MEDIA}?x=1"), API_BASE_URL, SID, "s").is_err());
        let local = MEDIA.replace("https://api.twilio.com", "http://127.0.0.1:8095");
        assert!(download(&local, "http://127.0.0.1:8095/", SID, "s").is_ok(), "a local stand-in");
    }
}
