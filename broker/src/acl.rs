//! Topic permissions: which topics a user may publish on and which filters it may subscribe to,
//! with MQTT wildcard matching. The engine's ACL hooks (`hooks`) ask these.

/// The filters granting one user its publish and subscribe rights; `%u` in a filter stands
/// for the username.
///
/// A user with no `publish` list may publish nothing (least privilege: a forged block or
/// measurement is what authentication exists to stop). A user with no `subscribe` list may
/// subscribe to every topic (`#`): wattchain's data is public by design (the chain is
/// verifiable by anyone), so reading is the convenient default; list filters to narrow it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Filters of the topics this user may publish on (its will topic included).
    pub publish: Vec<String>,
    /// Filters this user may subscribe to, or their narrowings; `None` means everything.
    pub subscribe: Option<Vec<String>>,
}

impl Permissions {
    /// Everything: publish and subscribe on every topic.
    pub fn everything() -> Permissions {
        Permissions {
            publish: vec!["#".into()],
            subscribe: None,
        }
    }

    /// These permissions with `%u` replaced by `username` in every filter.
    pub fn for_user(&self, username: &str) -> Permissions {
        let expand = |filters: &[String]| -> Vec<String> {
            filters.iter().map(|f| f.replace("%u", username)).collect()
        };
        Permissions {
            publish: expand(&self.publish),
            subscribe: self.subscribe.as_deref().map(expand),
        }
    }

    /// True when publishing on `topic` is allowed.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| topic_matches(f, topic))
    }

    /// True when subscribing to `filter` (a `$share/group/` prefix is looked through) is
    /// allowed: some granted filter must cover every topic `filter` can match.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let filter = strip_share(filter);
        match &self.subscribe {
            None => true,
            Some(granted) => granted.iter().any(|g| filter_covers(g, filter)),
        }
    }
}

/// The filter inside a shared subscription `$share/{group}/{filter}`, or `filter` itself.
fn strip_share(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, inner)| inner)
}

/// MQTT topic matching: does `filter` (with `+` and `#`) match the topic name `topic`?
///
/// As in MQTT, a wildcard in the first level does not match a topic starting with `$`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            // `a/#` matches `a` too: `#` includes the parent level.
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (literal, Some(t)) if literal == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Is `filter` a well-formed MQTT filter: non-empty, `+` and `#` only as whole levels, and
/// `#` only as the last one?
pub fn is_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| {
            *level == "+" || (*level == "#" && i == last) || !level.contains(['+', '#'])
        })
}

/// Does the granted filter `granted` match every topic the requested filter `wanted` can?
pub fn filter_covers(granted: &str, wanted: &str) -> bool {
    // `$` topics are outside first-level wildcards.
    if wanted.starts_with('$') && granted.starts_with(['+', '#']) {
        return false;
    }
    let mut wanted_levels = wanted.split('/');
    for level in granted.split('/') {
        match (level, wanted_levels.next()) {
            ("#", _) => return true,
            (_, Some("#")) => return false,
            ("+", Some(_)) => {}
            (literal, Some(w)) if literal == w => {}
            _ => return false,
        }
    }
    wanted_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching_follows_mqtt_wildcards() {
        assert!(topic_matches(
            "wattchain/cabinet/c1/#",
            "wattchain/cabinet/c1/quad"
        ));
        assert!(topic_matches(
            "wattchain/cabinet/c1/#",
            "wattchain/cabinet/c1"
        ));
        assert!(!topic_matches(
            "wattchain/cabinet/c1/#",
            "wattchain/cabinet/c2/quad"
        ));
        assert!(topic_matches(
            "wattchain/+/c1/quad",
            "wattchain/cabinet/c1/quad"
        ));
        assert!(!topic_matches("wattchain/+", "wattchain/cabinet/c1"));
        assert!(!topic_matches("#", "$SYS/uptime"));
        assert!(topic_matches("#", "wattchain/ledger/block"));
        assert!(!topic_matches(
            "wattchain/ledger/block",
            "wattchain/ledger/head"
        ));
    }

    #[test]
    fn filters_have_wildcards_only_as_whole_levels_and_hash_last() {
        for ok in ["a", "a/+/c", "+", "#", "a/#", "wattchain/cabinet/+/commit"] {
            assert!(is_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a/b+", "a#", "#/a"] {
            assert!(!is_filter(bad), "{bad}");
        }
    }

    #[test]
    fn a_granted_filter_covers_only_narrower_filters() {
        assert!(filter_covers("wattchain/#", "wattchain/cabinet/+/window/+"));
        assert!(filter_covers(
            "wattchain/cabinet/+/window/+",
            "wattchain/cabinet/c1/window/U"
        ));
        assert!(!filter_covers(
            "wattchain/cabinet/+/window/+",
            "wattchain/cabinet/#"
        ));
        assert!(!filter_covers(
            "wattchain/cabinet/c1/#",
            "wattchain/cabinet/+/quad"
        ));
        assert!(!filter_covers("#", "$SYS/#"));
        assert!(filter_covers("#", "#"));
    }

    #[test]
    fn shared_subscriptions_are_judged_by_their_inner_filter() {
        let perms = Permissions {
            publish: vec![],
            subscribe: Some(vec!["wattchain/cabinet/+/window/+".into()]),
        };
        assert!(perms.may_subscribe("$share/averagers/wattchain/cabinet/+/window/+"));
        assert!(!perms.may_subscribe("$share/averagers/wattchain/ledger/#"));
    }

    #[test]
    fn percent_u_stands_for_the_username_and_no_publish_list_means_nothing() {
        let perms = Permissions {
            publish: vec!["wattchain/agent/%u/status".into()],
            subscribe: None,
        }
        .for_user("averager-1");
        assert!(perms.may_publish("wattchain/agent/averager-1/status"));
        assert!(!perms.may_publish("wattchain/agent/publisher/status"));
        assert!(perms.may_subscribe("wattchain/#"));
        let none = Permissions::default();
        assert!(!none.may_publish("wattchain/ledger/block"));
    }
}
