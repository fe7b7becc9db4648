//! The Zammad adapter against an in-process stub of Zammad's REST API.
//!
//! Every expectation follows Zammad's published API documentation (docs.zammad.org, sources in
//! github.com/zammad/zammad-documentation, `api/`):
//! - <https://docs.zammad.org/en/latest/api/intro.html>: `Authorization: Token token=<token>`,
//!   `Content-Type: application/json` on writes, condition based search (a `condition` posted to
//!   an endpoint search), `expand=true` answers with objects, `From` header for acting on behalf
//!   (not used), no idempotency key;
//! - <https://docs.zammad.org/en/latest/api/ticket/index.html>: `POST /api/v1/tickets` with
//!   `title`, `group`, `customer_id: "guess:<email>"`, `priority` by name, `article`; `201 Created`
//!   with the ticket;
//! - <https://docs.zammad.org/en/latest/api/ticket/articles.html>: `POST /api/v1/ticket_articles`
//!   with `ticket_id`, `subject`, `body`, `content_type`, `type`, `internal`, `sender`,
//!   `attachments` (`filename`, base64 `data`, `mime-type`); `GET /api/v1/ticket_articles/by_ticket/{id}`;
//! - <https://docs.zammad.org/en/latest/api/user.html>: `GET /api/v1/users/me`;
//! - <https://docs.zammad.org/en/latest/api/object.html>: `GET /api/v1/object_manager_attributes`
//!   (permission `admin.object`);
//! - tags as one comma-separated `tags` string on create, and the database answering condition
//!   searches without `query`: Zammad's `TicketsController#create`/`#search` and `CanSearch.search`
//!   (github.com/zammad/zammad, `app/controllers/tickets_controller.rb`, `app/models/concerns/can_search.rb`).

use std::sync::{Arc, Mutex};

use omni_proto::v1::Attachment;
use omni_proto::v1::contact_identifier::Kind;

use super::*;
use crate::helpdesk::kit::{self, CONVERSATION, Call, FOLLOW_UP, OPENING, Reply, event, helpdesk_conformance, identifier, serve};

const AUTHORIZATION: &str = "Token token=zm-token";

fn config(base_url: &str) -> ZammadConfig {
    ZammadConfig {
        base_url: base_url.into(),
        token: "zm-token".into(),
        group: "Users".into(),
        timeout_secs: 1,
        conversation_attribute: default_conversation_attribute(),
        origin_event_attribute: default_origin_event_attribute(),
        priorities: ZammadPriorities::default(),
        reply_secret: None,
    }
}

fn adapter(base_url: &str) -> Zammad {
    Zammad::new(config(base_url)).unwrap()
}

fn routing() -> Routing {
    Routing {
        group: None,
        priority: Some(Priority::High),
        tags: vec!["vip".into(), "shipping".into()],
        custom_fields: [("order_number".to_owned(), "42".to_owned())].into(),
    }
}

/// A ticket as the documentation shows it (create response, `expand=true` search result).
fn ticket_json(id: u64, conversation: &str, origin: &str) -> Value {
    json!({
        "id": id, "group_id": 1, "priority_id": 3, "state_id": 1, "organization_id": null,
        "number": format!("220{id:02}"), "title": "Siparişim nerede?", "owner_id": 1,
        "customer_id": 10, "note": null, "first_response_at": null,
        "create_article_type_id": 11, "create_article_sender_id": 2, "article_count": 1,
        "updated_by_id": 3, "created_by_id": 3,
        "created_at": "2021-11-08T14:17:41.913Z", "updated_at": "2021-11-08T14:17:41.994Z",
        "article_ids": [30], "ticket_time_accounting_ids": [],
        "omni_conversation": conversation, "omni_origin_event": origin,
        "group": "Users", "priority": "3 high", "state": "new", "customer": "ayse@example.com"
    })
}

/// An article as the documentation shows it (create response, `by_ticket` list).
fn article_json(id: u64, ticket_id: u64, body: &Value) -> Value {
    json!({
        "id": id, "ticket_id": ticket_id, "type_id": 11, "sender_id": 2,
        "from": "Ayşe Yılmaz <ayse@example.com>", "to": null, "cc": null,
        "subject": body["subject"], "reply_to": null, "message_id": null, "message_id_md5": null,
        "in_reply_to": null, "content_type": body["content_type"], "references": null,
        "body": body["body"], "internal": body["internal"], "preferences": {},
        "updated_by_id": 3, "created_by_id": 3, "origin_by_id": 10,
        "created_at": "2021-11-08T16:13:35.962Z", "updated_at": "2021-11-08T16:13:35.962Z",
        "attachments": [], "type": body["type"], "sender": body["sender"],
        "created_by": "omni@example.com", "updated_by": "omni@example.com"
    })
}

/// A small Zammad: tickets, articles, responses that may be lost.
#[derive(Default)]
struct Desk {
    tickets: Vec<Value>,
    articles: Vec<Value>,
    /// Whether the next write is stored but its response never comes.
    lose_next_write: bool,
}

fn desk_reply(desk: &Mutex<Desk>, call: &Call) -> Reply {
    let mut desk = desk.lock().unwrap();
    let segments: Vec<&str> = call.path.trim_start_matches("/api/v1/").split('/').collect();
    match (call.method.as_str(), segments.as_slice()) {
        ("POST", ["tickets"]) => {
            let body = call.json();
            let id = desk.tickets.len() as u64 + 1;
            let ticket = ticket_json(
                id,
                body["omni_conversation"].as_str().unwrap(),
                body["omni_origin_event"].as_str().unwrap(),
            );
            desk.tickets.push(ticket.clone());
            let article = article_json(desk.articles.len() as u64 + 30, id, &body["article"]);
            desk.articles.push(article);
            kit::stored(&mut desk.lose_next_write, ticket)
        }
        ("POST", ["tickets", "search"]) => {
            let condition = &call.json()["condition"]["ticket.omni_conversation"];
            let found: Vec<Value> = desk
                .tickets
                .iter()
                .filter(|t| t["omni_conversation"] == condition["value"])
                .cloned()
                .collect();
            Reply::Json(200, Value::Array(found))
        }
        ("POST", ["ticket_articles"]) => {
            let body = call.json();
            let article = article_json(desk.articles.len() as u64 + 30, body["ticket_id"].as_u64().unwrap(), &body);
            desk.articles.push(article.clone());
            kit::stored(&mut desk.lose_next_write, article)
        }
        ("GET", ["ticket_articles", "by_ticket", id]) => Reply::Json(
            200,
            Value::Array(
                desk.articles
                    .iter()
                    .filter(|a| a["ticket_id"].as_u64() == id.parse().ok())
                    .cloned()
                    .collect(),
            ),
        ),
        _ => Reply::Json(404, json!({ "error": "No route matches", "error_human": call.path })),
    }
}

async fn desk() -> (String, Arc<Mutex<Vec<Call>>>, Arc<Mutex<Desk>>) {
    fake().await.into_parts()
}

impl kit::Desk for Desk {
    fn lose_next_write(&mut self) {
        self.lose_next_write = true;
    }

    fn tickets(&self) -> usize {
        self.tickets.len()
    }
}

/// The small Zammad on the kit's server.
async fn fake() -> kit::DeskFake<Desk> {
    kit::DeskFake::start(Desk::default(), desk_reply, |url| Box::new(adapter(url))).await
}

helpdesk_conformance!(fake());

fn assert_api_call(call: &Call, method: &str, path: &str) {
    kit::assert_api_call(call, method, path, AUTHORIZATION);
}

#[tokio::test]
async fn create_ticket_sends_the_documented_fields() {
    let (url, calls, _) = desk().await;
    let ticket = adapter(&url)
        .create_ticket(&event(OPENING, "Siparişim nerede?\nNo: 42"), &routing())
        .await
        .unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            id: "1".into(),
            url: format!("{url}/#ticket/zoom/1")
        }
    );
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_api_call(&calls[0], "POST", "/api/v1/tickets");
    assert_eq!(calls[0].query, "");
    assert_eq!(
        calls[0].json(),
        json!({
            "title": "Siparişim nerede?",
            "group": "Users",
            "customer_id": "guess:ayse@example.com",
            "priority": "3 high",
            "tags": "channel-whatsapp,shipping,vip",
            "order_number": "42",
            "omni_conversation": CONVERSATION,
            "omni_origin_event": OPENING,
            "article": {
                "subject": "Siparişim nerede?",
                "body": format!("Siparişim nerede?\nNo: 42\n\n[omni-event:{OPENING}]"),
                "content_type": "text/plain",
                "type": "web",
                "internal": false,
                "sender": "Customer",
            },
        })
    );
}

#[tokio::test]
async fn an_email_opens_an_email_article_from_the_customer_in_the_rules_group() {
    let (url, calls, _) = desk().await;
    let mut email = event(OPENING, "Hallo");
    email.channel = Channel::Email as i32;
    email.subject = "Bestelling 42".into();
    let routing = Routing {
        group: Some("Sales::Europe".into()),
        priority: Some(Priority::Urgent),
        ..Default::default()
    };
    adapter(&url).create_ticket(&email, &routing).await.unwrap();
    let body = calls.lock().unwrap()[0].json();
    assert_eq!(body["group"], "Sales::Europe");
    assert_eq!(body["priority"], "3 high");
    assert_eq!(body["title"], "Bestelling 42");
    assert_eq!(body["tags"], "channel-email,shipping");
    assert_eq!(body["article"]["type"], "email");
    assert_eq!(body["article"]["from"], "ayse@example.com");
    assert_eq!(body["article"]["subject"], "Bestelling 42");
}

#[tokio::test]
async fn a_customer_without_email_is_guessed_by_an_address_that_cannot_receive_mail() {
    let (url, calls, _) = desk().await;
    let mut phone_only = event(OPENING, "Hallo");
    phone_only.participants[0].identifiers = vec![identifier(Kind::Phone, "+31612345678")];
    phone_only.channel = Channel::Voice as i32;
    adapter(&url).create_ticket(&phone_only, &Routing::default()).await.unwrap();
    let body = calls.lock().unwrap()[0].json();
    assert_eq!(body["customer_id"], "guess:+31612345678@phone.invalid");
    assert_eq!(body["article"]["type"], "phone");
    assert!(body.get("priority").is_none());
}

#[tokio::test]
async fn find_ticket_posts_a_condition_search() {
    let (url, calls, desk) = desk().await;
    desk.lock().unwrap().tickets.push(ticket_json(1, "other", "other-event"));
    desk.lock().unwrap().tickets.push(ticket_json(2, CONVERSATION, OPENING));
    let zammad = adapter(&url);
    let found = zammad.find_ticket(CONVERSATION).await.unwrap().unwrap();
    assert_eq!(
        found.ticket,
        TicketRef {
            id: "2".into(),
            url: format!("{url}/#ticket/zoom/2")
        }
    );
    assert_eq!(found.origin_event_id, OPENING);
    assert_eq!(zammad.find_ticket("f".repeat(32).as_str()).await.unwrap(), None);
    let calls = calls.lock().unwrap();
    assert_api_call(&calls[0], "POST", "/api/v1/tickets/search");
    assert_eq!(calls[0].query, "expand=true");
    assert_eq!(
        calls[0].json(),
        json!({ "condition": { "ticket.omni_conversation": { "operator": "is", "value": CONVERSATION } } })
    );
}

#[tokio::test]
async fn find_ticket_reads_the_assets_answer_of_older_zammads() {
    let (url, _) = serve(|_| {
        Reply::Json(
            200,
            json!({ "tickets": [4], "tickets_count": 1, "assets": { "Ticket": { "4": ticket_json(4, CONVERSATION, OPENING) } } }),
        )
    })
    .await;
    let found = adapter(&url).find_ticket(CONVERSATION).await.unwrap().unwrap();
    assert_eq!((found.ticket.id.as_str(), found.origin_event_id.as_str()), ("4", OPENING));
}

#[tokio::test]
async fn a_customer_follow_up_is_a_customer_article_and_an_outbound_event_an_internal_note() {
    let (url, calls, _) = desk().await;
    let zammad = adapter(&url);
    let ticket = zammad.ticket_ref("7");
    zammad.append(&ticket, &event(FOLLOW_UP, "Nog iets")).await.unwrap();
    let mut outbound = event(OPENING, "Called back, sorted");
    outbound.direction = Direction::Outbound as i32;
    zammad.append(&ticket, &outbound).await.unwrap();
    let calls = calls.lock().unwrap();
    assert_api_call(&calls[0], "POST", "/api/v1/ticket_articles");
    assert_eq!(
        calls[0].json(),
        json!({
            "ticket_id": 7,
            "body": format!("Nog iets\n\n[omni-event:{FOLLOW_UP}]"),
            "content_type": "text/plain",
            "type": "web",
            "internal": false,
            "sender": "Customer",
        })
    );
    assert_api_call(&calls[1], "POST", "/api/v1/ticket_articles");
    assert_eq!(
        calls[1].json(),
        json!({
            "ticket_id": 7,
            "body": format!("Called back, sorted\n\n[omni-event:{OPENING}]"),
            "content_type": "text/plain",
            "type": "note",
            "internal": true,
            "sender": "Agent",
        })
    );
}

#[tokio::test]
async fn has_event_reads_the_articles_of_that_ticket_only() {
    // A follow-up whose answer was lost: the conformance kit.
    let (url, calls, _) = desk().await;
    let zammad = adapter(&url);
    let ticket = zammad.ticket_ref("1");
    assert!(!zammad.has_event(&ticket, FOLLOW_UP).await.unwrap());
    zammad.append(&ticket, &event(FOLLOW_UP, "Nog iets")).await.unwrap();
    assert!(zammad.has_event(&ticket, FOLLOW_UP).await.unwrap());
    assert!(!zammad.has_event(&ticket, OPENING).await.unwrap());
    assert!(!zammad.has_event(&zammad.ticket_ref("2"), FOLLOW_UP).await.unwrap());
    assert_api_call(calls.lock().unwrap().last().unwrap(), "GET", "/api/v1/ticket_articles/by_ticket/2");
}

#[tokio::test]
async fn attachments_travel_base64_in_the_article_and_the_rest_is_listed() {
    let (url, calls, _) = desk().await;
    let mut with_files = event(FOLLOW_UP, "Zie bijlage");
    with_files.attachments = vec![
        Attachment {
            name: "portal.txt".into(),
            media_type: "text/plain".into(),
            size_bytes: 19,
            content: Some(Content::Data(b"The cake is a lie!\n".to_vec())),
            ..Default::default()
        },
        Attachment {
            name: "video.mp4".into(),
            media_type: "video/mp4".into(),
            size_bytes: 90_000_000,
            content: Some(Content::Reference("https://media.example/v/1".into())),
            ..Default::default()
        },
    ];
    let zammad = adapter(&url);
    zammad.append(&zammad.ticket_ref("5"), &with_files).await.unwrap();
    let body = calls.lock().unwrap()[0].json();
    // The documentation's own example: "The cake is a lie!\n" is "VGhlIGNha2UgaXMgYSBsaWUhCg==".
    assert_eq!(
        body["attachments"],
        json!([{ "filename": "portal.txt", "data": "VGhlIGNha2UgaXMgYSBsaWUhCg==", "mime-type": "text/plain" }])
    );
    assert_eq!(
        body["body"],
        format!(
            "Zie bijlage\n\n-- \nAttachments:\n- video.mp4 (video/mp4, 90000000 bytes): https://media.example/v/1\n\n[omni-event:{FOLLOW_UP}]"
        )
    );
}

#[tokio::test]
async fn a_mail_showing_its_photo_is_an_html_article_with_the_photo_inline() {
    // `content_type: text/html` (the articles page); Zammad stores each `data:image/(jpeg|png)`
    // `<img>` of an HTML article as an inline file of it (`HtmlSanitizer.replace_inline_images`,
    // called from `creates_ticket_articles.rb`).
    let (url, calls, _) = desk().await;
    let mut mail = event(FOLLOW_UP, "The lid: [image: lid]");
    let body = mail.body.get_or_insert_default();
    body.html = r#"<p>The lid:</p><img src="cid:lid@mail" alt="lid" onerror="steal()"><script>x()</script>"#.into();
    let file = |name: &str, media_type: &str, content: Content, content_id: &str| Attachment {
        name: name.into(),
        media_type: media_type.into(),
        size_bytes: 4,
        content: Some(content),
        inline: !content_id.is_empty(),
        content_id: content_id.into(),
        ..Default::default()
    };
    mail.attachments = vec![
        file("receipt.pdf", "application/pdf", Content::Data(b"%PDF".to_vec()), ""),
        file("lid.jpg", "image/jpeg", Content::Data(vec![0xff, 0xd8, 0xff, 0xe0]), "lid@mail"),
        file("clip.mov", "video/quicktime", Content::Reference("s3://media/clip".into()), ""),
    ];
    let zammad = adapter(&url);
    zammad.append(&zammad.ticket_ref("5"), &mail).await.unwrap();
    let sent = calls.lock().unwrap()[0].json();
    assert_eq!(sent["content_type"], "text/html");
    assert_eq!(
        sent["body"],
        format!(
            "<p>The lid:</p><img src=\"data:image/jpeg;base64,/9j/4A==\" alt=\"lid\">\
             <p>-- <br>Attachments:<br>- clip.mov (video/quicktime, 4 bytes): s3://media/clip</p>\
             <p>[omni-event:{FOLLOW_UP}]</p>"
        )
    );
    assert_eq!(
        sent["attachments"],
        json!([{ "filename": "receipt.pdf", "data": "JVBERg==", "mime-type": "application/pdf" }]),
        "the photo travels in the body only"
    );
    assert!(zammad.has_event(&zammad.ticket_ref("5"), FOLLOW_UP).await.unwrap());
    // An id HTML escapes is found as the HTML article holds it.
    let mut odd = mail.clone();
    odd.event_id = format!("{FOLLOW_UP}&1");
    zammad.append(&zammad.ticket_ref("6"), &odd).await.unwrap();
    assert!(
        calls.lock().unwrap().last().unwrap().json()["body"]
            .as_str()
            .unwrap()
            .ends_with("&amp;1]</p>")
    );
    assert!(zammad.has_event(&zammad.ticket_ref("6"), &odd.event_id).await.unwrap());
}

#[tokio::test]
async fn check_reads_the_current_user_and_the_ticket_attributes() {
    let attributes = |names: &[&str]| {
        Value::Array(
            names
                .iter()
                .map(|name| json!({ "id": 40, "name": name, "display": name, "data_type": "input", "object": "Ticket", "active": true }))
                .chain([json!({ "id": 41, "name": "omni_origin_event", "data_type": "input", "object": "User" })])
                .collect(),
        )
    };
    let me = json!({ "id": 3, "login": "omni@example.com", "email": "omni@example.com", "active": true, "role_ids": [1, 2] });
    let (answer_me, listed) = (me.clone(), attributes(&["title", "omni_conversation"]));
    let (url, calls) = serve(move |call| match call.path.as_str() {
        "/api/v1/users/me" => Reply::Json(200, answer_me.clone()),
        _ => Reply::Json(200, listed.clone()),
    })
    .await;
    let error = adapter(&url).check().await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Misconfigured(ref m) if m.contains("omni_origin_event")),
        "{error:?}"
    );
    {
        let calls = calls.lock().unwrap();
        assert_api_call(&calls[0], "GET", "/api/v1/users/me");
        assert_api_call(&calls[1], "GET", "/api/v1/object_manager_attributes");
    }

    let (answer_me, listed) = (me.clone(), attributes(&["omni_conversation", "omni_origin_event"]));
    let (url, _) = serve(move |call| match call.path.as_str() {
        "/api/v1/users/me" => Reply::Json(200, answer_me.clone()),
        _ => Reply::Json(200, listed.clone()),
    })
    .await;
    adapter(&url).check().await.unwrap();

    // A token without `admin.object` cannot see the attributes: nothing more to check.
    let (url, _) = serve(move |call| match call.path.as_str() {
        "/api/v1/users/me" => Reply::Json(200, me.clone()),
        _ => Reply::Json(403, json!({ "error": "Not authorized (user)!" })),
    })
    .await;
    adapter(&url).check().await.unwrap();
}

#[tokio::test]
async fn refusals_are_dead_lettered_or_need_an_operator() {
    // 429, 5xx, no answer and a closed connection: the conformance kit.
    let (url, _) = serve(|_| {
        Reply::Json(
            422,
            json!({ "error": "Invalid email 'x@' of customer", "error_human": "Invalid email 'x@' of customer" }),
        )
    })
    .await;
    let error = adapter(&url).create_ticket(&event(OPENING, "x"), &routing()).await.unwrap_err();
    assert!(
        matches!(error, HelpdeskError::Rejected { status: 422, ref detail } if detail.contains("Invalid email")),
        "{error:?}"
    );
    assert!(!error.is_transient());

    let (url, _) = serve(|_| {
        Reply::Json(
            422,
            json!({ "error": "unknown attribute 'omni_conversation' for Ticket.", "error_human": "unknown attribute 'omni_conversation' for Ticket." }),
        )
    })
    .await;
    let error = adapter(&url).create_ticket(&event(OPENING, "x"), &routing()).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");

    let (url, _) = serve(|_| Reply::Json(401, json!({ "error": "Invalid token!" }))).await;
    let error = adapter(&url).check().await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");
}

#[test]
fn config_is_validated_and_the_token_never_printed() {
    let mut problems = Problems::default();
    config("https://support.example.com").validate("router.destinations.zammad", &mut problems);
    assert!(problems.is_empty(), "{problems}");

    let mut bad = config("support.example.com");
    bad.token = String::new();
    bad.group = " ".into();
    bad.timeout_secs = 0;
    bad.conversation_attribute = "Omni-Conversation".into();
    bad.origin_event_attribute = "Omni-Conversation".into();
    bad.priorities.urgent = String::new();
    let mut problems = Problems::default();
    bad.validate("z", &mut problems);
    let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "z.base_url",
            "z.token",
            "z.group",
            "z.timeout_secs",
            "z.conversation_attribute",
            "z.origin_event_attribute",
            "z.origin_event_attribute",
            "z.priorities.urgent"
        ]
    );

    let printed = format!("{:?}", config("https://support.example.com"));
    assert!(!printed.contains("zm-token") && printed.contains("<redacted>"), "{printed}");

    let parsed: ZammadConfig = serde_json::from_value(json!({
        "base_url": "https://support.example.com", "token": "t", "group": "Users", "timeout_secs": 10,
        "priorities": { "urgent": "4 urgent" }
    }))
    .unwrap();
    assert_eq!(
        (parsed.conversation_attribute.as_str(), parsed.origin_event_attribute.as_str()),
        ("omni_conversation", "omni_origin_event")
    );
    assert_eq!(parsed.priorities.name(Priority::Urgent), "4 urgent");
    assert_eq!(parsed.priorities.name(Priority::Normal), "2 normal");
}

#[test]
fn base64_matches_rfc_4648() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), expected);
    }
    assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
}
