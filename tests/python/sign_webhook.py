#!/usr/bin/env python3
"""Signs a webhook body the way its provider does, for the end-to-end tests.

Twilio and Slack are signed with their official SDKs (`twilio.request_validator.RequestValidator`,
`slack_sdk.signature.SignatureVerifier`), so the gateway is checked against the providers' own
code, not only against ours. The others have no official SDK that signs; they follow the
provider's published recipe with Python's hmac:

- Meta (WhatsApp, Messenger, Instagram): X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(app secret, body)
  https://developers.facebook.com/docs/graph-api/webhooks/getting-started#event-notifications
- X Account Activity API: x-twitter-webhooks-signature = "sha256=" + base64 HMAC-SHA256(consumer secret, body)
  https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/securing-webhooks
- Telegram: X-Telegram-Bot-Api-Secret-Token = the secret_token given to setWebhook
  https://core.telegram.org/bots/api#setwebhook
- Aircall: the webhook's token inside the body (`token`)
  https://developer.aircall.io/api-references/#webhook-usage
- Viber: X-Viber-Content-Signature = hex HMAC-SHA256(auth token, body), as viber-bot-python's
  Api.verify_signature computes it
  https://developers.viber.com/docs/api/rest-bot-api/#callbacks
- FreeSWITCH mod_json_cdr: HTTP Basic with `cred` (user:password), built by an independent HTTP
  client (requests' auth=(user, password)), as curl builds it for CURLOPT_USERPWD
  https://developer.signalwire.com/freeswitch/FreeSWITCH-Explained/Modules/mod_json_cdr_4653124

Usage: sign_webhook.py PROVIDER SECRET URL BODY_FILE [--content-type CT] [--timestamp UNIX]
Prints JSON: {"url": ..., "headers": {...}, "body": "..."} (the body may be rewritten: Aircall's token).
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.parse


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("provider")
    parser.add_argument("secret")
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("--content-type", default=None)
    parser.add_argument("--timestamp", type=int, default=None)
    args = parser.parse_args()

    with open(args.body_file, "rb") as f:
        body = f.read()
    url = args.url
    provider = args.provider
    headers = {}
    content_type = args.content_type or (
        "application/x-www-form-urlencoded" if args.body_file.endswith(".form") else "application/json"
    )

    if provider in ("whatsapp", "messenger", "instagram"):
        digest = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = "sha256=" + digest
    elif provider == "x":
        digest = hmac.new(args.secret.encode(), body, hashlib.sha256).digest()
        headers["x-twitter-webhooks-signature"] = "sha256=" + base64.b64encode(digest).decode()
    elif provider == "telegram":
        headers["X-Telegram-Bot-Api-Secret-Token"] = args.secret
    elif provider == "slack":
        from slack_sdk.signature import SignatureVerifier

        timestamp = str(args.timestamp if args.timestamp is not None else int(time.time()))
        verifier = SignatureVerifier(signing_secret=args.secret)
        headers["X-Slack-Request-Timestamp"] = timestamp
        headers["X-Slack-Signature"] = verifier.generate_signature(timestamp=timestamp, body=body.decode("utf-8"))
    elif provider in ("twilio-sms", "twilio-voice"):
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(args.secret)
        if content_type == "application/json":
            separator = "&" if "?" in url else "?"
            url = url + separator + "bodySHA256=" + validator.compute_hash(body.decode("utf-8"))
            params = {}
        else:
            params = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        headers["X-Twilio-Signature"] = validator.compute_signature(url, params)
    elif provider == "viber":
        headers["X-Viber-Content-Signature"] = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
    elif provider == "freeswitch":
        import requests

        user, _, password = args.secret.partition(":")
        prepared = requests.Request("POST", url, data=body, auth=(user, password)).prepare()
        headers["Authorization"] = prepared.headers["Authorization"]
    elif provider == "aircall":
        payload = json.loads(body)
        payload["token"] = args.secret
        body = json.dumps(payload, ensure_ascii=False).encode()
    else:
        print(f"unknown provider {provider}", file=sys.stderr)
        return 2

    headers["Content-Type"] = content_type
    json.dump({"url": url, "headers": headers, "body": body.decode("utf-8")}, sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
