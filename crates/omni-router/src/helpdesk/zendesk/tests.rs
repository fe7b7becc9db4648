//! The adapter against the shared in-process fake of Zendesk's Ticketing API v2
//! (`omni_fakes::zendesk`, the one the end-to-end tests use too). What the fake checks and
//! answers follows Zendesk's published reference; its module docs list every page (tickets,
//! idempotency, metadata, audits and pagination, comments, attachments, users, groups, ticket
//! fields, security and authentication, requests, rate limits). A request off that reference is
//! answered 418 `StubRefused`, so the adapter fails and the test says why.

use std::collections::BTreeMap;

use omni_fakes::zendesk::{self as zendesk_fake, Call, Cue, FIELD_ID, GROUP_ID, REQUESTER_ID};
use omni_proto::v1::{Attachment, Body, Channel, ContactIdentifier, Participant};

use super::*;
use crate::helpdesk::kit::{self, helpdesk_conformance};

const API_TOKEN_AUTH: &str = "Basic YWdlbnRAZXhhbXBsZS5jb20vdG9rZW46c2VjcmV0LXRva2Vu"; // agent@example.com/token:secret-token
const OAUTH_AUTH: &str = "Bearer oauth-secret";

/// The shared fake, keeping every call, accepting the API token above and the OAuth token.
struct Fake {
    zendesk: zendesk_fake::Zendesk,
    base: String,
}

impl Fake {
    async fn start() -> Self {
        let (zendesk, base) = zendesk_fake::Zendesk::start("agent@example.com", "secret-token").await.unwrap();
        zendesk.accept_oauth_token("oauth-secret");
        zendesk.record_calls();
        Self { zendesk, base }
    }

    fn config(&self) -> ZendeskConfig {
        ZendeskConfig {
            base_url: self.base.clone(),
            email: Some("agent@example.com".into()),
            api_token: Some("secret-token".into()),
            oauth_token: None,
            group_id: Some(GROUP_ID),
            reopen_on_reply: true,
            timeout_secs: 1,
            reply_secret: None,
        }
    }

    fn adapter(&self) -> Zendesk {
        Zendesk::new(self.config()).unwrap()
    }

    fn cue(&self, method: &str, path: &str, cue: Cue) {
        self.zendesk.cue(method, path, cue);
    }

    fn calls(&self) -> Vec<Call> {
        self.zendesk.calls()
    }

    fn take_calls(&self) -> Vec<Call> {
        self.zendesk.take_calls()
    }

    fn ticket_count(&self) -> usize {
        self.zendesk.tickets().len()
    }

    fn comments(&self, ticket: u64) -> Vec<Value> {
        self.zendesk
            .audits(ticket)
            .iter()
            .flat_map(|a| a["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "Comment")
            .collect()
    }
}

impl kit::Fake for Fake {
    fn adapter(&self) -> Box<dyn Helpdesk> {
        Box::new(Fake::adapter(self))
    }

    fn adapter_at(&self, base_url: &str) -> Box<dyn Helpdesk> {
        Box::new(
            Zendesk::new(ZendeskConfig {
                base_url: base_url.into(),
                ..self.config()
            })
            .unwrap(),
        )
    }

    fn lose_next_write(&self) {
        self.zendesk.lose_next_write();
    }

    fn fail_next_call(&self, failure: kit::Failure) {
        self.zendesk.fail_next_call(failure.response());
    }

    fn tickets(&self) -> usize {
        self.ticket_count()
    }
}

helpdesk_conformance!(Fake::start());

fn customer(name: &str, identifiers: Vec<ContactIdentifier>) -> Participant {
    Participant {
        role: Role::Customer as i32,
        display_name: name.into(),
        identifiers,
    }
}

fn identifier(kind: Kind, value: &str) -> ContactIdentifier {
    ContactIdentifier {
        kind: kind as i32,
        value: value.into(),
        platform: String::new(),
    }
}

fn event(event_id: &str, text: &str) -> ConversationEvent {
    ConversationEvent {
        event_id: event_id.into(),
        conversation_id: "conv-1".into(),
        channel: Channel::Email as i32,
        direction: Direction::Inbound as i32,
        participants: vec![customer("Ayşe Yılmaz", vec![identifier(Kind::Email, "ayse@example.com")])],
        subject: "Siparişim nerede?".into(),
        body: Some(Body {
            text: text.into(),
            ..Default::default()
        }),
        tags: vec!["shipping".into()],
        ..Default::default()
    }
}

fn routing() -> Routing {
    Routing {
        group: Some(GROUP_ID.to_string()),
        priority: Some(Priority::High),
        tags: vec!["vip".into(), "shipping".into()],
        custom_fields: BTreeMap::from([(FIELD_ID.to_string(), "TR".to_owned())]),
    }
}

fn pairs(list: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    list.to_vec()
}

#[test]
fn config_is_validated_and_never_shows_its_secrets() {
    let config: ZendeskConfig = serde_json::from_value(json!({
        "base_url": "https://acme.zendesk.com",
        "email": "agent@acme.com",
        "api_token": "tok-123",
        "timeout_secs": 20,
    }))
    .unwrap();
    assert!(config.reopen_on_reply);
    let mut problems = Problems::default();
    config.validate("router.destinations.zd", &mut problems);
    assert!(problems.is_empty(), "{problems}");
    let shown = format!("{config:?}");
    assert!(!shown.contains("tok-123") && shown.contains("<redacted>"), "{shown}");

    let both: ZendeskConfig = serde_json::from_value(json!({
        "base_url": "acme.zendesk.com",
        "email": "agent",
        "api_token": "t",
        "oauth_token": "o",
        "group_id": 0,
        "timeout_secs": 0,
    }))
    .unwrap();
    let mut problems = Problems::default();
    both.validate("zd", &mut problems);
    let keys: Vec<&str> = problems.items().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["zd.base_url", "zd", "zd.email", "zd.group_id", "zd.timeout_secs"],
        "{problems}"
    );
    assert!(!format!("{both:?}").contains("\"o\""));

    let neither: ZendeskConfig = serde_json::from_value(json!({ "base_url": "https://acme.zendesk.com", "timeout_secs": 5 })).unwrap();
    let mut problems = Problems::default();
    neither.validate("zd", &mut problems);
    assert_eq!(problems.items().len(), 1);
    assert!(serde_json::from_value::<ZendeskConfig>(json!({ "base_url": "x", "timeout_secs": 5, "subdomain": "acme" })).is_err());
}

#[test]
fn tags_name_the_channel_then_the_event_and_the_rule_once_each() {
    let mut e = event("e", "x");
    e.tags = vec!["Shipping".into(), "late delivery".into()];
    let r = Routing {
        tags: vec!["vip".into(), "shipping".into(), " ".into()],
        ..Routing::default()
    };
    assert_eq!(
        super::ticket_tags(&e, &r, tag),
        ["channel-email", "shipping", "late_delivery", "vip"]
    );
    e.channel = Channel::WebChat as i32;
    assert_eq!(super::ticket_tags(&e, &Routing::default(), tag)[0], "channel-web_chat");
}

#[test]
fn a_customer_without_a_name_is_named_by_how_they_are_known() {
    let mut e = event("e", "x");
    assert_eq!(requester_name(&e, "ayse@example.com"), "Ayşe Yılmaz");
    e.participants = vec![customer("", vec![identifier(Kind::Phone, "+905551112233")])];
    assert_eq!(requester_name(&e, "+905551112233@phone.invalid"), "+905551112233");
    e.participants = vec![customer(" ", vec![identifier(Kind::Email, "ayse@example.com")])];
    assert_eq!(requester_name(&e, "ayse@example.com"), "ayse@example.com");
}

#[tokio::test]
async fn check_needs_an_agent_and_the_default_group() {
    let fake = Fake::start().await;
    fake.adapter().check().await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(
        calls.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect::<Vec<_>>(),
        [("GET", "/api/v2/users/me"), ("GET", "/api/v2/groups/360")]
    );
    assert_eq!(calls[0].header("authorization"), Some(API_TOKEN_AUTH));
    assert_eq!(calls[0].header("accept"), Some("application/json"));

    fake.zendesk.set_role("end-user");
    let error = fake.adapter().check().await.unwrap_err();
    assert!(
        matches!(&error, HelpdeskError::Misconfigured(m) if m.contains("end-user")),
        "{error:?}"
    );

    fake.zendesk.set_role("agent");
    let mut config = fake.config();
    config.group_id = Some(999);
    let error = Zendesk::new(config).unwrap().check().await.unwrap_err();
    assert!(
        matches!(&error, HelpdeskError::Misconfigured(m) if m.contains("group 999")),
        "{error:?}"
    );

    let mut config = fake.config();
    config.api_token = Some("wrong".into());
    let error = Zendesk::new(config).unwrap().check().await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Misconfigured(_)), "{error:?}");
}

#[tokio::test]
async fn oauth_tokens_go_as_bearer_tokens() {
    let fake = Fake::start().await;
    let mut config = fake.config();
    config.email = None;
    config.api_token = None;
    config.oauth_token = Some("oauth-secret".into());
    Zendesk::new(config).unwrap().check().await.unwrap();
    assert_eq!(fake.calls()[0].header("authorization"), Some(OAUTH_AUTH));
}

#[tokio::test]
async fn a_ticket_is_created_with_the_documented_body_and_an_idempotency_key() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk
        .create_ticket(&event("ev-1", "Merhaba, siparişim gelmedi."), &routing())
        .await
        .unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            id: "35436".into(),
            url: format!("{}/agent/tickets/35436", fake.base),
        }
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/api/v2/tickets"));
    assert!(call.query.is_empty());
    assert_eq!(call.header("authorization"), Some(API_TOKEN_AUTH));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(call.header("idempotency-key"), Some("omni-ev-1"));
    assert_eq!(
        call.json(),
        json!({ "ticket": {
            "subject": "Siparişim nerede?",
            "comment": { "body": "Merhaba, siparişim gelmedi.", "public": true },
            "requester": { "name": "Ayşe Yılmaz", "email": "ayse@example.com" },
            "external_id": "conv-1",
            "tags": ["channel-email", "shipping", "vip"],
            "metadata": { "omni_conversation_id": "conv-1", "omni_origin_event_id": "ev-1" },
            "custom_fields": [{ "id": FIELD_ID, "value": "TR" }],
            "group_id": GROUP_ID,
            "priority": "high",
        }})
    );
}

#[tokio::test]
async fn the_default_group_applies_and_names_resolve_to_ids() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let mut e = event("ev-1", "x");
    e.participants = vec![customer("", vec![identifier(Kind::Phone, "+905551112233")])];
    e.direction = Direction::Outbound as i32;
    zendesk.create_ticket(&e, &Routing::default()).await.unwrap();
    let body = fake.take_calls()[0].json();
    assert_eq!(body["ticket"]["group_id"], json!(GROUP_ID));
    assert_eq!(
        body["ticket"]["requester"],
        json!({ "name": "+905551112233", "email": "+905551112233@phone.invalid" })
    );
    assert_eq!(
        body["ticket"]["comment"]["public"],
        json!(false),
        "outbound opens with an internal note"
    );
    assert!(body["ticket"].get("priority").is_none() && body["ticket"].get("custom_fields").is_none());

    let named = Routing {
        group: Some("tier 1".into()),
        priority: Some(Priority::Urgent),
        custom_fields: BTreeMap::from([("Country".to_owned(), "NL".to_owned())]),
        ..Routing::default()
    };
    let mut e = event("ev-2", "y");
    e.conversation_id = "conv-2".into();
    zendesk.create_ticket(&e, &named).await.unwrap();
    let calls = fake.take_calls();
    let lookups: Vec<(&str, Vec<(&str, &str)>)> = calls.iter().map(|c| (c.path.as_str(), c.query_pairs())).collect();
    assert_eq!(
        lookups,
        [
            ("/api/v2/groups", pairs(&[("page[size]", "100")])),
            ("/api/v2/ticket_fields", pairs(&[("page[size]", "100")])),
            ("/api/v2/tickets", vec![]),
        ]
    );
    let ticket = &calls[2].json()["ticket"];
    assert_eq!((&ticket["group_id"], &ticket["priority"]), (&json!(GROUP_ID), &json!("urgent")));
    assert_eq!(ticket["custom_fields"], json!([{ "id": FIELD_ID, "value": "NL" }]));

    // Known names are not looked up again; an unknown one is an operator's problem.
    let mut e = event("ev-3", "z");
    e.conversation_id = "conv-3".into();
    zendesk.create_ticket(&e, &named).await.unwrap();
    assert_eq!(fake.take_calls().len(), 1);
    let missing = Routing {
        group: Some("Nobody".into()),
        ..Routing::default()
    };
    let error = zendesk.create_ticket(&event("ev-4", "w"), &missing).await.unwrap_err();
    assert!(
        matches!(&error, HelpdeskError::Misconfigured(m) if m.contains("group named `Nobody`")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_follow_up_from_the_customer_is_a_public_comment_by_the_requester() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    fake.zendesk.set_status(35436, "solved");
    fake.take_calls();

    let mut reply = event("ev-2", "Re: still waiting\n> quoted");
    reply.body.as_mut().unwrap().new_text = "Re: still waiting".into();
    zendesk.append(&ticket, &reply).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(
        calls.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect::<Vec<_>>(),
        [("GET", "/api/v2/tickets/35436"), ("PUT", "/api/v2/tickets/35436")]
    );
    assert_eq!(calls[1].header("content-type"), Some("application/json"));
    assert_eq!(calls[1].header("idempotency-key"), None);
    assert_eq!(
        calls[1].json(),
        json!({ "ticket": {
            "comment": { "body": "Re: still waiting", "public": true, "author_id": REQUESTER_ID },
            "metadata": { "omni_event_id": "ev-2" },
            "status": "open",
        }})
    );
    assert_eq!(fake.comments(35436).len(), 2);

    // Open now: no status change.
    zendesk.append(&ticket, &event("ev-3", "again")).await.unwrap();
    assert!(fake.take_calls()[1].json()["ticket"].get("status").is_none());
}

#[tokio::test]
async fn what_the_team_wrote_is_an_internal_note() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    fake.take_calls();
    let mut note = event("ev-2", "Called back, left a voicemail.");
    note.direction = Direction::Outbound as i32;
    zendesk.append(&ticket, &note).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 1, "no need to read the ticket");
    assert_eq!(
        calls[0].json(),
        json!({ "ticket": {
            "comment": { "body": "Called back, left a voicemail.", "public": false },
            "metadata": { "omni_event_id": "ev-2" },
        }})
    );
}

#[tokio::test]
async fn inline_attachments_are_uploaded_and_references_listed() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let mut e = event("ev-1", "Zie bijlage");
    e.attachments = vec![
        Attachment {
            name: "factuur.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: 4,
            content: Some(Content::Data(b"%PDF".to_vec())),
            ..Default::default()
        },
        Attachment {
            name: "voice.ogg".into(),
            media_type: "audio/ogg".into(),
            size_bytes: 31_457_280,
            content: Some(Content::Reference("https://media.example/voice.ogg".into())),
            ..Default::default()
        },
    ];
    zendesk.create_ticket(&e, &Routing::default()).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!((calls[0].method.as_str(), calls[0].path.as_str()), ("POST", "/api/v2/uploads"));
    assert_eq!(calls[0].query_pairs(), [("filename", "factuur.pdf")]);
    assert_eq!(calls[0].header("content-type"), Some("application/pdf"));
    assert_eq!(calls[0].header("authorization"), Some(API_TOKEN_AUTH));
    assert_eq!(&calls[0].body[..], b"%PDF");
    assert_eq!(
        calls[1].json()["ticket"]["comment"],
        json!({
            "body": "Zie bijlage\n\n-- \nAttachments:\n- voice.ogg (audio/ogg, 31457280 bytes): https://media.example/voice.ogg",
            "public": true,
            "uploads": ["tok1"],
        })
    );

    // An upload Zendesk refuses is listed instead; the event still goes through.
    fake.cue("POST", "/api/v2/uploads", Cue::Invalid);
    let ticket = TicketRef {
        id: "35436".into(),
        url: String::new(),
    };
    let mut note = event("ev-2", "nog een");
    note.attachments = e.attachments[..1].to_vec();
    note.direction = Direction::Outbound as i32;
    zendesk.append(&ticket, &note).await.unwrap();
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[1].json()["ticket"]["comment"],
        json!({ "body": "nog een\n\n-- \nAttachments:\n- factuur.pdf (application/pdf, 4 bytes)", "public": false })
    );
}

#[tokio::test]
async fn a_ticket_whose_creation_answer_was_lost_is_found_with_its_origin_event() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    assert_eq!(zendesk.find_ticket("conv-1").await.unwrap(), None);
    fake.take_calls();

    fake.cue("POST", "/api/v2/tickets", Cue::LoseResponse);
    let error = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "{error:?}");
    assert_eq!(fake.ticket_count(), 1, "Zendesk made the ticket");

    // After a restart: the router looks the conversation up before creating.
    let found = fake.adapter().find_ticket("conv-1").await.unwrap().unwrap();
    assert_eq!(
        found,
        FoundTicket {
            ticket: TicketRef {
                id: "35436".into(),
                url: format!("{}/agent/tickets/35436", fake.base),
            },
            origin_event_id: "ev-1".into(),
        }
    );
    let calls = fake.take_calls();
    let requests: Vec<_> = calls[1..]
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str(), c.query_pairs()))
        .collect();
    assert_eq!(
        requests,
        [
            ("GET", "/api/v2/tickets", pairs(&[("external_id", "conv-1")])),
            ("GET", "/api/v2/tickets/35436/audits", pairs(&[("page[size]", "100")])),
        ]
    );
    assert_eq!(fake.adapter().find_ticket("conv-other").await.unwrap(), None);
}

#[tokio::test]
async fn a_retried_create_gets_the_ticket_already_made() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    fake.cue("POST", "/api/v2/tickets", Cue::LoseResponse);
    zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap_err();
    // Same body, same key: Zendesk answers from its idempotency cache.
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    assert_eq!(ticket.id, "35436");
    assert_eq!(fake.ticket_count(), 1);
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].header("idempotency-key"), calls[1].header("idempotency-key"));
    assert_eq!(calls[0].body, calls[1].body);

    // With an attachment each try uploads again, so the body differs and Zendesk refuses the
    // reused key: the ticket the first try made is found by conversation and origin event.
    let mut e = event("ev-2", "with file");
    e.conversation_id = "conv-2".into();
    e.attachments = vec![Attachment {
        name: "a.txt".into(),
        media_type: "text/plain".into(),
        size_bytes: 1,
        content: Some(Content::Data(b"a".to_vec())),
        ..Default::default()
    }];
    fake.cue("POST", "/api/v2/tickets", Cue::LoseResponse);
    zendesk.create_ticket(&e, &Routing::default()).await.unwrap_err();
    fake.take_calls();
    let ticket = zendesk.create_ticket(&e, &Routing::default()).await.unwrap();
    assert_eq!(ticket.id, "35437");
    assert_eq!(fake.ticket_count(), 2);
    let calls = fake.take_calls();
    let requests: Vec<(&str, &str)> = calls.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect();
    assert_eq!(
        requests,
        [
            ("POST", "/api/v2/uploads"),
            ("POST", "/api/v2/tickets"),
            ("GET", "/api/v2/tickets"),
            ("GET", "/api/v2/tickets/35437/audits"),
        ]
    );
    assert_eq!(calls[1].json()["ticket"]["comment"]["uploads"], json!(["tok2"]));
}

#[tokio::test]
async fn a_follow_up_whose_answer_was_lost_is_found_in_the_audits() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let ticket = zendesk.create_ticket(&event("ev-1", "first"), &routing()).await.unwrap();
    assert!(zendesk.has_event(&ticket, "ev-1").await.unwrap(), "the opening event counts");
    assert!(!zendesk.has_event(&ticket, "ev-2").await.unwrap());
    // A long ticket: triggers and agents made many audits since.
    for _ in 0..150 {
        fake.zendesk.add_audit(35436, json!({}));
    }

    // The PUT goes through; its answer does not come back.
    fake.cue("PUT", "/api/v2/tickets/35436", Cue::LoseResponse);
    let error = zendesk.append(&ticket, &event("ev-2", "second")).await.unwrap_err();
    assert!(matches!(error, HelpdeskError::Unavailable(_)), "{error:?}");
    assert_eq!(fake.comments(35436).len(), 2);

    // After a restart the router asks before appending again.
    fake.take_calls();
    let zendesk = fake.adapter();
    assert!(zendesk.has_event(&ticket, "ev-2").await.unwrap());
    let calls = fake.take_calls();
    let pages: Vec<(&str, Vec<(&str, &str)>)> = calls.iter().map(|c| (c.path.as_str(), c.query_pairs())).collect();
    assert_eq!(
        pages,
        [
            ("/api/v2/tickets/35436/audits", pairs(&[("page[size]", "100")])),
            (
                "/api/v2/tickets/35436/audits",
                pairs(&[("page[size]", "100"), ("page[after]", "c100")])
            ),
        ]
    );
    assert!(!zendesk.has_event(&ticket, "ev-9").await.unwrap());
}

#[tokio::test]
async fn refusals_are_dead_lettered() {
    let fake = Fake::start().await;
    let zendesk = fake.adapter();
    let e = event("ev-1", "x");

    // 429, 5xx, no answer and a closed connection: the conformance kit.
    fake.cue("POST", "/api/v2/tickets", Cue::Invalid);
    let error = zendesk.create_ticket(&e, &routing()).await.unwrap_err();
    match error {
        HelpdeskError::Rejected { status: 422, detail } => assert!(detail.contains("RecordInvalid"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.ticket_count(), 0);

    let no_customer = ConversationEvent {
        participants: vec![],
        ..e.clone()
    };
    assert!(matches!(
        zendesk.create_ticket(&no_customer, &routing()).await,
        Err(HelpdeskError::Rejected { status: 0, .. })
    ));
    let error = zendesk
        .append(
            &TicketRef {
                id: "99".into(),
                url: String::new(),
            },
            &e,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, HelpdeskError::Rejected { status: 404, .. }), "{error:?}");
}
