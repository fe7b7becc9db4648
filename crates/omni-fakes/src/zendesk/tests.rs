//! The fake itself: what it refuses and how a lost answer looks. The router's Zendesk tests
//! check the rest, through the adapter.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::json;

use super::*;

/// A fake with a client signed in as its agent.
struct Api {
    zendesk: Zendesk,
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn start() -> Self {
        let (zendesk, base) = Zendesk::start("agent@example.com", "secret").await.unwrap();
        let client = reqwest::Client::new();
        Self { zendesk, base, client }
    }

    /// A request with the credentials and the headers Requests asks for.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}/api/v2{path}", self.base))
            .basic_auth("agent@example.com/token", Some("secret"))
            .header("accept", "application/json")
    }

    /// Create Ticket with `key` and `body`; the answer's status.
    async fn create(&self, key: &str, body: &Value) -> StatusCode {
        let request = self.request(Method::POST, "/tickets").header("idempotency-key", key);
        request.json(body).send().await.unwrap().status()
    }
}

fn new_ticket() -> Value {
    json!({ "ticket": {
        "subject": "Siparişim nerede?",
        "comment": { "body": "Merhaba", "public": true },
        "requester": { "name": "Ayşe", "email": "ayse@example.com" },
        "external_id": "conv-1",
        "metadata": { "omni_origin_event_id": "ev-1" },
    }})
}

#[tokio::test]
async fn requests_off_the_reference_are_refused_and_listed() {
    let api = Api::start().await;
    let without_key = api.request(Method::POST, "/tickets").json(&new_ticket());
    assert_eq!(without_key.send().await.unwrap().status(), StatusCode::IM_A_TEAPOT);
    let mut without_email = new_ticket();
    without_email["ticket"]["requester"] = json!({ "name": "Ayşe" });
    assert_eq!(api.create("k", &without_email).await, StatusCode::IM_A_TEAPOT);
    let mut unknown_upload = new_ticket();
    unknown_upload["ticket"]["comment"]["uploads"] = json!(["tok1"]);
    assert_eq!(api.create("k", &unknown_upload).await, StatusCode::IM_A_TEAPOT);
    let every_ticket = api.request(Method::GET, "/tickets").send().await.unwrap();
    assert_eq!(every_ticket.status(), StatusCode::IM_A_TEAPOT);
    let stranger = api
        .client
        .get(format!("{}/api/v2/tickets/1", api.base))
        .header("accept", "application/json");
    assert_eq!(stranger.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    let violations = api.zendesk.violations();
    assert_eq!(violations.len(), 5, "{violations:?}");
    assert!(violations[0].contains("Idempotency-Key"), "{violations:?}");
    assert!(violations[1].contains("requester.email"), "{violations:?}");
    assert!(violations[2].contains("unknown upload token"), "{violations:?}");
    assert!(violations[3].contains("external_id"), "{violations:?}");
    assert!(violations[4].contains("auth"), "{violations:?}");
    assert!(api.zendesk.tickets().is_empty());
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_done_and_a_retry_with_its_key_hits() {
    let api = Api::start().await;
    api.zendesk.set_mode(Mode::ApplyThenFail);
    assert_eq!(api.create("omni-ev-1", &new_ticket()).await, StatusCode::INTERNAL_SERVER_ERROR);
    api.zendesk.set_mode(Mode::Healthy);
    let retried = api.request(Method::POST, "/tickets").header("idempotency-key", "omni-ev-1");
    let retried = retried.json(&new_ticket()).send().await.unwrap();
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(retried.headers()["x-idempotency-lookup"], "hit");
    let mut other = new_ticket();
    other["ticket"]["comment"]["body"] = json!("Nog iets");
    assert_eq!(
        api.create("omni-ev-1", &other).await,
        StatusCode::BAD_REQUEST,
        "the key with another body"
    );

    let tickets = api.zendesk.tickets();
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        (tickets[0].id, tickets[0].comments.clone()),
        (FIRST_TICKET, vec!["Merhaba".to_owned()])
    );
    assert_eq!(tickets[0].audits, [json!({ "omni_origin_event_id": "ev-1" })]);
    assert_eq!(api.zendesk.counts(), (3, 1), "all three answered, the first answer lost");
    assert!(api.zendesk.violations().is_empty(), "{:?}", api.zendesk.violations());
}

#[tokio::test]
async fn an_upload_carries_its_files_type_json_only_for_a_json_file() {
    let api = Api::start().await;
    let upload = |name: &str, content_type: &str| {
        api.request(Method::POST, "/uploads")
            .query(&[("filename", name)])
            .header("content-type", content_type)
            .body("{\"order\": 1042}")
    };
    let order = upload("order.json", "application/json").send().await.unwrap();
    assert_eq!(order.status(), StatusCode::CREATED, "a customer's .json file");
    let photo = upload("photo.jpg", "image/jpeg").send().await.unwrap();
    assert_eq!(photo.status(), StatusCode::CREATED);
    let mislabelled = upload("photo.jpg", "application/json").send().await.unwrap();
    assert_eq!(
        mislabelled.status(),
        StatusCode::IM_A_TEAPOT,
        "the API's JSON type on a file that is not JSON"
    );
    let violations = api.zendesk.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("Content-Type must describe the uploaded file"),
        "{violations:?}"
    );
}
