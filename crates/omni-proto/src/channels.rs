//! What omni knows about each `Channel` value, read from the contract itself: its config name
//! (the value's name without `CHANNEL_`, lowercased) and its family (the `(omni.v1.family)` option
//! beside the value in `common.proto`), which names its raw topic. Adding a channel kind is one
//! line in the proto enum; the router's rules, the topic table and the helpdesk mappings all
//! read this list.

use std::sync::OnceLock;

use prost_reflect::Value;

use crate::descriptor_pool;
use crate::v1::Channel;

/// One channel kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The enum value.
    pub channel: Channel,
    /// Its name in config, event ids and tags: `web_chat`, `whatsapp`, `sms`, ...
    pub name: &'static str,
    /// Its family: the raw topic is `omni.raw.<family>.v1`.
    pub family: &'static str,
}

/// Every channel kind but `CHANNEL_UNSPECIFIED`, in enum order.
pub fn channels() -> &'static [ChannelInfo] {
    static ALL: OnceLock<Vec<ChannelInfo>> = OnceLock::new();
    ALL.get_or_init(read_channels)
}

/// The kind named `name` in config (case-insensitive).
pub fn channel_named(name: &str) -> Option<Channel> {
    channels()
        .iter()
        .find(|info| info.name.eq_ignore_ascii_case(name))
        .map(|info| info.channel)
}

/// What omni knows about `channel`; `None` for `CHANNEL_UNSPECIFIED`.
pub fn channel_info(channel: Channel) -> Option<&'static ChannelInfo> {
    channels().iter().find(|info| info.channel == channel)
}

/// Every family, each once, in the order of their first channel.
pub fn families() -> Vec<&'static str> {
    let mut families: Vec<&'static str> = Vec::new();
    for info in channels() {
        if !families.contains(&info.family) {
            families.push(info.family);
        }
    }
    families
}

fn read_channels() -> Vec<ChannelInfo> {
    let pool = descriptor_pool();
    let descriptor = pool
        .get_enum_by_name("omni.v1.Channel")
        .expect("omni.v1.Channel is in the contract");
    let family = pool
        .get_extension_by_name("omni.v1.family")
        .expect("omni.v1.family is in the contract");
    descriptor
        .values()
        .filter(|value| value.number() != Channel::Unspecified as i32)
        .map(|value| {
            let channel = Channel::try_from(value.number()).expect("generated from the same enum");
            let options = value.options();
            let family = match options.get_extension(&family).as_ref() {
                Value::String(family) if !family.is_empty() => leak(family.clone()),
                _ => panic!("{} has no (omni.v1.family) option in common.proto", value.name()),
            };
            let name = value.name().strip_prefix("CHANNEL_").unwrap_or(value.name()).to_ascii_lowercase();
            ChannelInfo {
                channel,
                name: leak(name),
                family,
            }
        })
        .collect()
}

/// The list is built once per process from the embedded schema, so its strings live as long.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_has_a_name_and_a_family() {
        let names: Vec<&str> = channels().iter().map(|info| info.name).collect();
        // The first kinds, in enum order; later ones follow (a new kind is one proto line).
        assert_eq!(
            names[..11],
            [
                "email",
                "api",
                "web_chat",
                "whatsapp",
                "messenger",
                "instagram",
                "x",
                "telegram",
                "slack",
                "sms",
                "voice"
            ]
        );
        let values = descriptor_pool().get_enum_by_name("omni.v1.Channel").unwrap().values().count();
        assert_eq!(names.len(), values - 1, "every value but UNSPECIFIED");
        assert!(names.iter().all(|name| !name.is_empty() && *name == name.to_ascii_lowercase()));
        assert_eq!(families()[..6], ["email", "api", "chat", "social", "sms", "voice"]);
        assert_eq!(channel_info(Channel::Telegram).map(|info| info.family), Some("chat"));
        assert_eq!(channel_info(Channel::Unspecified), None);
        assert_eq!(channel_named("WEB_CHAT"), Some(Channel::WebChat));
        assert_eq!(channel_named("fax"), None);
    }
}
