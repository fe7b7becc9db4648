-- wrk script for `make bench-webhooks`: every request is a distinct Telegram update (its own
-- update_id and message_id, so its own event id), authenticated with the development
-- secret_token header, Turkish text of a realistic length.
local counter = 0
local thread = 0

function setup(t)
  thread = thread + 1
  t:set("thread_id", thread)
end

function init(args)
  counter = tonumber(wrk.thread:get("thread_id")) * 100000000
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Telegram-Bot-Api-Secret-Token"] = "omni-dev-telegram-secret-token"

function request()
  counter = counter + 1
  local chat = 500000000 + (counter % 1000)
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"Ayşe","last_name":"Yılmaz","language_code":"tr"},'
    .. '"chat":{"id":%d,"first_name":"Ayşe","type":"private"},"date":1795342500,'
    .. '"text":"Merhaba, 1042 numaralı siparişim hâlâ kargoya verilmedi. Ne zaman gelir? Takip numarasını paylaşır mısınız?"}}',
    counter, counter, chat, chat)
  return wrk.format(nil, nil, nil, body)
end
