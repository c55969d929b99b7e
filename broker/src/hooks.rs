//! The engine's hooks: who may connect (argon2 users), where each user may publish and
//! subscribe, and the message counters behind [`crate::Broker::stats`].
//!
//! rmqtt runs these in-process on every listener, so no port reaches a session without them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::types::{
    AuthResult, ConnectInfo, LastWill, PublishAclResult, Reason, SubscribeAclResult,
};
use tracing::warn;

use crate::auth::{Authenticator, Refusal};
use crate::stats::Counters;

/// Every hook type [`AccessHook`] answers.
pub(crate) const ACCESS_HOOKS: [Type; 3] = [
    Type::ClientAuthenticate,
    Type::MessagePublishCheckAcl,
    Type::ClientSubscribeCheckAcl,
];

/// Every hook type [`PublishHook`] answers.
pub(crate) const PUBLISH_HOOKS: [Type; 2] = [Type::MessagePublishCheckAcl, Type::MessagePublish];

/// Runs before [`AccessHook`]: a malformed topic is refused whoever sends it.
pub(crate) const PUBLISH_HOOK_PRIORITY: u32 = 10;

/// Every hook type [`CountingHook`] observes.
pub(crate) const COUNTING_HOOKS: [Type; 4] = [
    Type::ClientConnect,
    Type::MessagePublish,
    Type::MessageDelivered,
    Type::MessageDropped,
];

/// How long a CONNECT waits for the previous connection of its client id to finish closing.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

/// Lets a client reconnect at once under the same id.
///
/// rmqtt 0.24 takes a session over by sending its task a kick and waiting for the answer; a
/// clean session whose connection has just closed is between its online loop and its
/// removal, answers nothing, and the new CONNECT is refused "server unavailable" (3.1.1: 3,
/// MQTT 5: 0x88) — every agent reconnecting right after a network blip or a refused
/// PUBLISH, one try in ten on a busy machine.
///
/// Run after authentication, this kicks a previous session that ends at disconnect itself,
/// retrying (bounded) until rmqtt has removed it, so the handshake's own kick finds nothing
/// in its way. A persistent session is left to rmqtt: its offline loop answers kicks and
/// hands its state over. While another CONNECT of the same id is in its handshake, rmqtt
/// refuses this one (3 / 0x88) and the client retries: which of two simultaneous
/// connections of one id should win is not ours to guess.
pub(crate) async fn settle_takeover(scx: &ServerContext, info: &ConnectInfo) {
    let id = info.id().clone();
    let deadline = Instant::now() + TAKEOVER_WAIT;
    loop {
        let Ok(mut entry) = scx
            .extends
            .shared()
            .await
            .entry(id.clone())
            .try_lock()
            .await
        else {
            return;
        };
        let Some(previous) = entry.session() else {
            return;
        };
        let ends_at_disconnect = match previous.connect_info().await.as_deref() {
            Ok(ConnectInfo::V3(_, connect)) => connect.clean_session,
            Ok(ConnectInfo::V5(_, connect)) => connect.session_expiry_interval_secs == 0,
            Err(_) => return,
        };
        if !ends_at_disconnect || entry.kick(true, true, false).await.is_ok() {
            return;
        }
        drop(entry);
        if Instant::now() >= deadline {
            warn!(client = %info.client_id(), "the previous connection of this client id is still closing; rmqtt may refuse this CONNECT");
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// [`settle_takeover`] for a broker without users, at the start of every handshake (rmqtt
/// skips the authentication hooks for anonymous clients). With users, [`AccessHook`] runs it
/// once the client is authenticated, so no one can kick a session before logging in.
pub(crate) struct TakeoverHook {
    pub(crate) scx: ServerContext,
}

#[async_trait]
impl Handler for TakeoverHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::ClientConnect(info) = param {
            settle_takeover(&self.scx, info).await;
        }
        (true, acc)
    }
}

/// Authentication and topic permissions, registered only when users are configured.
pub(crate) struct AccessHook {
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) scx: ServerContext,
}

impl AccessHook {
    async fn authenticate(&self, info: &ConnectInfo) -> AuthResult {
        let username = info.username().map(|name| &**name);
        let password = info.password().map(|p| p.as_ref()).unwrap_or_default();
        let permissions = match self.auth.login(username, password).await {
            Ok(permissions) => permissions,
            Err(Refusal::NotAuthorized) => return AuthResult::NotAuthorized,
            Err(Refusal::BadCredentials) => return AuthResult::BadUsernameOrPassword,
            Err(Refusal::ServerBusy) => {
                // rmqtt's authentication answer has no "server busy": refuse as not authorized.
                warn!(client = %info.client_id(), "no password verification slot within connect_timeout; refused");
                return AuthResult::NotAuthorized;
            }
        };
        // The engine publishes a will without asking the publish ACL: judge it here.
        if let Some(will) = info.last_will() {
            let topic = match will {
                LastWill::V3(will) => &will.topic,
                LastWill::V5(will) => &will.topic,
            };
            if !permissions.may_publish(topic) {
                warn!(client = %info.client_id(), topic = %topic, "will on a topic this user may not publish; refused");
                return AuthResult::NotAuthorized;
            }
        }
        AuthResult::Allow(false, None)
    }
}

#[async_trait]
impl Handler for AccessHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => {
                let result = self.authenticate(info).await;
                if matches!(result, AuthResult::Allow(..)) {
                    settle_takeover(&self.scx, info).await;
                }
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let allowed = session
                    .id
                    .username
                    .as_ref()
                    .and_then(|name| self.auth.permissions(name))
                    .is_some_and(|p| p.may_publish(&publish.topic));
                if allowed {
                    return (true, acc);
                }
                // MQTT 5 has a PUBACK "not authorized"; 3.1.1 has no refusal, so the
                // connection is closed (as mosquitto does for a QoS 1 publish).
                let v5 = session
                    .connect_info()
                    .await
                    .is_ok_and(|info| matches!(info.as_ref(), ConnectInfo::V5(..)));
                warn!(client = %session.id.client_id, topic = %publish.topic, "publish refused by permissions");
                let refusal = PublishAclResult::rejected(!v5, Some("not authorized".into()));
                (false, Some(HookResult::PublishAclResult(refusal)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let allowed = session
                    .id
                    .username
                    .as_ref()
                    .and_then(|name| self.auth.permissions(name))
                    .is_some_and(|p| p.may_subscribe(&subscribe.topic_filter));
                if allowed {
                    return (true, acc);
                }
                warn!(client = %session.id.client_id, filter = %subscribe.topic_filter, "subscribe refused by permissions");
                let refusal = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                (false, Some(HookResult::SubscribeAclResult(refusal)))
            }
            _ => (true, acc),
        }
    }
}

/// What every broker must do with a PUBLISH that rmqtt 0.24 does not, users or not.
pub(crate) struct PublishHook;

#[async_trait]
impl Handler for PublishHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            // MQTT-3.3.2-2: a topic name has no wildcards. rmqtt accepts (and retains) them.
            Parameter::MessagePublishCheckAcl(session, publish)
                if publish.topic.contains(['+', '#']) =>
            {
                warn!(client = %session.id.client_id, topic = %publish.topic, "publish to a wildcard topic name refused; connection closed");
                let refusal =
                    PublishAclResult::rejected(true, Some("wildcard in a topic name".into()));
                (false, Some(HookResult::PublishAclResult(refusal)))
            }
            // rmqtt writes an outgoing topic alias into the properties only when there are
            // some: an MQTT 3.1.1 publisher's message reached an MQTT 5 subscriber a second
            // time with an empty topic and no alias. Give every message properties, once, here.
            Parameter::MessagePublish(_, _, publish) => {
                let current = match &acc {
                    Some(HookResult::Publish(modified)) => modified,
                    _ => *publish,
                };
                if current.properties.is_some() {
                    return (true, acc);
                }
                let mut with_properties = current.clone();
                with_properties.properties = Some(Default::default());
                (true, Some(HookResult::Publish(with_properties)))
            }
            _ => (true, acc),
        }
    }
}

/// Counts what passes through the engine; never changes a message.
pub(crate) struct CountingHook {
    pub(crate) counters: Arc<Counters>,
}

#[async_trait]
impl Handler for CountingHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientConnect(..) => self.counters.connect(),
            Parameter::MessagePublish(..) => self.counters.received(),
            Parameter::MessageDelivered(..) => self.counters.delivered(),
            Parameter::MessageDropped(to, from, publish, reason) => {
                let slow = matches!(
                    reason,
                    Reason::MessageQueueFull | Reason::InflightWindowFull
                );
                let client = to.as_ref().map(|to| &*to.client_id);
                self.counters
                    .dropped(client, slow, &publish.topic, &from.id.client_id, reason);
            }
            _ => {}
        }
        (true, acc)
    }
}
