//! The shared Request Tracker test instance (`OMNI_TEST_RT_URL`; `make test` starts one).

use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

use crate::eventually;

/// The shared Request Tracker test instance.
#[derive(Clone)]
pub struct Rt {
    /// Base URL.
    pub url: String,
    client: reqwest::Client,
}

impl Rt {
    /// From `OMNI_TEST_RT_URL` (default `http://127.0.0.1:8098`), checked to answer.
    pub async fn from_env() -> Self {
        let rt = Self::at(&std::env::var("OMNI_TEST_RT_URL").unwrap_or_else(|_| "http://127.0.0.1:8098".into()));
        if let Err(error) = rt.get("/queue/1").await {
            panic!(
                "Request Tracker does not answer at {}: {error:#}\nstart it with `deploy/local/rt.sh start 8098` (make test does)",
                rt.url
            );
        }
        rt
    }

    /// The instance at `url` (unchecked).
    pub fn at(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// GET a REST2 path, as JSON.
    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let response = self
            .client
            .get(format!("{}/REST/2.0{path_and_query}", self.url))
            .basic_auth("root", Some("password"))
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("GET {path_and_query}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// The values of a ticket's custom field, by name (none when the ticket has no such field).
    pub async fn custom_field(&self, ticket: &str, name: &str) -> anyhow::Result<Vec<String>> {
        let ticket = self.get(&format!("/ticket/{ticket}")).await?;
        Ok(ticket["CustomFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|field| field["name"] == name)
            .flat_map(|field| field["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect())
    }

    /// POST JSON to a REST2 path as `root`, the agent of these tests (omni writes as `omni`).
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}/REST/2.0{path}", self.url))
            .basic_auth("root", Some("password"))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// The agent `root` sets a ticket's status (`resolved`, `open`...), as REST2 takes it.
    pub async fn set_status(&self, ticket: &str, status: &str) -> anyhow::Result<()> {
        let response = self
            .client
            .put(format!("{}/REST/2.0/ticket/{ticket}", self.url))
            .basic_auth("root", Some("password"))
            .json(&serde_json::json!({ "Status": status }))
            .send()
            .await?;
        let code = response.status();
        let text = response.text().await?;
        if !code.is_success() {
            bail!("PUT /ticket/{ticket} Status={status}: {code}: {text}");
        }
        Ok(())
    }

    /// The agent `root` answers the customer on a ticket (correspondence, as in RT's reply box).
    pub async fn answer(&self, ticket: &str, text: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "Content": text, "ContentType": "text/plain" });
        self.post(&format!("/ticket/{ticket}/correspond"), &body).await.map(|_| ())
    }

    /// [`Self::answer`] with files (name, media type, bytes), as REST2 takes them on correspond.
    pub async fn answer_with_files(&self, ticket: &str, text: &str, files: &[(&str, &str, &[u8])]) -> anyhow::Result<()> {
        use base64::Engine as _;
        let attachments: Vec<Value> = files
            .iter()
            .map(|(name, media_type, bytes)| {
                serde_json::json!({"FileName": name, "FileType": media_type,
                                   "FileContent": base64::engine::general_purpose::STANDARD.encode(bytes)})
            })
            .collect();
        let body = serde_json::json!({ "Content": text, "ContentType": "text/plain", "Attachments": attachments });
        self.post(&format!("/ticket/{ticket}/correspond"), &body).await.map(|_| ())
    }

    /// Every item of a paged REST2 collection (RT serves at most 100 per page).
    async fn all_pages(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        for page in 1.. {
            let page = page.to_string();
            let mut query: Vec<(&str, &str)> = params.to_vec();
            query.extend([("per_page", "100"), ("page", page.as_str())]);
            let found: Value = self
                .client
                .get(format!("{}/REST/2.0{path}", self.url))
                .basic_auth("root", Some("password"))
                .query(&query)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            items.extend(found["items"].as_array().cloned().unwrap_or_default());
            if found["pages"].as_f64().unwrap_or(0.0) <= page.parse::<f64>()? {
                break;
            }
        }
        Ok(items)
    }

    async fn search(&self, collection: &str, query: &str) -> anyhow::Result<Vec<String>> {
        let items = self.all_pages(&format!("/{collection}"), &[("query", query)]).await?;
        Ok(items.iter().filter_map(|item| item["id"].as_str().map(str::to_owned)).collect())
    }

    /// Ids of the tickets holding an omni conversation.
    pub async fn tickets_of_conversation(&self, conversation_id: &str) -> anyhow::Result<Vec<String>> {
        self.search("tickets", &format!("'CF.{{omni Conversation}}' = '{conversation_id}'"))
            .await
    }

    /// Ids of the tickets whose requestor has this address.
    pub async fn tickets_of_requestor(&self, email: &str) -> anyhow::Result<Vec<String>> {
        self.search("tickets", &format!("Requestor.EmailAddress = '{email}'")).await
    }

    /// The one ticket of `email`'s requestor, once there is one (within 90 s); more is an error.
    pub async fn only_ticket_of(&self, email: &str) -> anyhow::Result<String> {
        eventually(&format!("a ticket of {email}"), Duration::from_secs(90), || async {
            Ok(!self.tickets_of_requestor(email).await?.is_empty())
        })
        .await?;
        let mut tickets = self.tickets_of_requestor(email).await?;
        anyhow::ensure!(tickets.len() == 1, "{email} has {} tickets: {tickets:?}", tickets.len());
        Ok(tickets.remove(0))
    }

    /// Ids of the ticket's transactions of a type (`Create`, `Correspond`, ...).
    pub async fn transactions(&self, ticket: &str, kind: &str) -> anyhow::Result<Vec<String>> {
        self.search(
            "transactions",
            &format!("ObjectType = 'RT::Ticket' AND ObjectId = {ticket} AND Type = '{kind}'"),
        )
        .await
    }

    /// Ids of the ticket's transactions recording an omni event.
    pub async fn transactions_of_event(&self, ticket: &str, event_id: &str) -> anyhow::Result<Vec<String>> {
        self.search(
            "transactions",
            &format!("ObjectType = 'RT::Ticket' AND ObjectId = {ticket} AND 'CF.{{omni Event}}' = '{event_id}'"),
        )
        .await
    }

    /// The text/plain contents the customer's messages left on the ticket (the Create and
    /// Correspond transactions, not RT's own autoreplies), oldest first.
    pub async fn texts(&self, ticket: &str) -> anyhow::Result<Vec<String>> {
        self.texts_of(ticket, &["Create", "Correspond"]).await
    }

    /// The text/plain contents of the ticket's internal comments, oldest first.
    pub async fn comments(&self, ticket: &str) -> anyhow::Result<Vec<String>> {
        self.texts_of(ticket, &["Comment"]).await
    }

    async fn texts_of(&self, ticket: &str, kinds: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut transactions = Vec::new();
        for kind in kinds {
            transactions.extend(self.transactions(ticket, kind).await?);
        }
        // Listed without Content: RT puts a binary file's raw bytes there, and the JSON breaks.
        let params = [("fields", "ContentType,TransactionId,Filename"), ("orderby", "id")];
        let items = self.all_pages(&format!("/ticket/{ticket}/attachments"), &params).await?;
        let mut texts = Vec::new();
        for item in &items {
            let transaction = item["TransactionId"]["id"]
                .as_str()
                .or(item["TransactionId"].as_str())
                .unwrap_or_default();
            // A text file the customer sent has a name; the message's text has none.
            if item["ContentType"].as_str() == Some("text/plain")
                && item["Filename"].as_str().unwrap_or_default().is_empty()
                && transactions.iter().any(|t| t == transaction)
            {
                use base64::Engine as _;
                let id = item["id"].as_str().unwrap_or_default();
                let part = self.get(&format!("/attachment/{id}")).await?;
                let encoded: String = part["Content"].as_str().unwrap_or_default().split_whitespace().collect();
                let content = base64::engine::general_purpose::STANDARD.decode(encoded)?;
                texts.push(String::from_utf8_lossy(&content).trim_end().to_owned());
            }
        }
        Ok(texts)
    }

    /// The files on the ticket, `(file name, content type)`, oldest first.
    pub async fn files(&self, ticket: &str) -> anyhow::Result<Vec<(String, String)>> {
        let params = [("fields", "Filename,ContentType"), ("orderby", "id")];
        let items = self.all_pages(&format!("/ticket/{ticket}/attachments"), &params).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let name = item["Filename"].as_str().filter(|name| !name.is_empty())?;
                Some((name.to_owned(), item["ContentType"].as_str().unwrap_or_default().to_owned()))
            })
            .collect())
    }

    /// The SHA-256 (hex) of each file on the ticket by name, read from `GET /attachment/<id>`
    /// (base64; a listing with `Content` holds a binary file's raw bytes and does not parse).
    pub async fn file_hashes(&self, ticket: &str) -> anyhow::Result<Vec<(String, String)>> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let params = [("fields", "Filename"), ("orderby", "id")];
        let mut hashes = Vec::new();
        for item in self.all_pages(&format!("/ticket/{ticket}/attachments"), &params).await? {
            let Some(name) = item["Filename"].as_str().filter(|name| !name.is_empty()) else {
                continue;
            };
            let id = item["id"].as_str().unwrap_or_default();
            let attachment = self.get(&format!("/attachment/{id}")).await?;
            let encoded: String = attachment["Content"].as_str().unwrap_or_default().split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
            hashes.push((name.to_owned(), hex::encode(sha2::Sha256::digest(&bytes))));
        }
        Ok(hashes)
    }

    /// The ticket's requestor addresses.
    pub async fn requestors(&self, ticket: &str) -> anyhow::Result<Vec<String>> {
        let found = self.get(&format!("/ticket/{ticket}")).await?;
        Ok(found["Requestor"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect())
    }
}
