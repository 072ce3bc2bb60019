//! MQTT door controllers (`docs/mqtt.md`): taps are decided like every other credential
//! and answered with actions; each controller is kept supplied with a signed allow-list
//! for the time it cannot reach lintel; offline decisions it uploads join the event log
//! exactly once; its online state comes from its retained status and Last Will.
//!
//! With several nodes on one database, one node at a time holds the link (the lease
//! [`LINK_LEASE`]): the controllers' session on the broker is persistent, and two
//! connections under one client id would take it from each other. When that node dies its
//! lease expires and another connects, under the same session: what the broker held back
//! unacknowledged (taps, uploads) reaches the new node.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use lintel_core::OfflineDoors;
use lintel_core::offline::{ListDoor, ListInput, build_list, content_digest, period};
use lintel_doors::mqtt::{Delivery, LinkEvent, MqttConfig, MqttLink, MqttSlot, Topic};
use lintel_proto::controller::{
    AllowList, DecisionMessage, ListAck, OfflineDecision, Status, Tap, Upload, UploadAck, actions_for,
};
use lintel_proto::controller::{Controller, ListZone};
use lintel_proto::{DriverConfig, FailMode, PresentedCredential, Reason};
use lintel_signed::Authority;
use lintel_store::{ControllerRow, NewEvent, OfflineRecord, Store, StoreError, credential_id, parse_credential_id};
use tokio::sync::mpsc;

use crate::decide::{Ask, Decider, Source, credential_kind};
use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::workers::Workers;

/// How often the lists are checked against the directory: a revocation reaches the
/// controllers within this (plus the time to build and publish).
const LIST_CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often a list a controller has not acknowledged is sent again.
const RESEND_EVERY: Duration = Duration::from_secs(5);
/// Taps remembered (in memory) to answer a redelivered tap the same way.
const REMEMBERED_TAPS: usize = 4096;
/// How far ahead of lintel's clock an offline decision's time may be.
const CLOCK_SKEW_SECONDS: i64 = 300;
/// Taps decided at the same time; more wait (and hold back the link).
const TAPS_AT_ONCE: usize = 64;
/// The lease of the node that holds the MQTT link.
pub const LINK_LEASE: &str = "mqtt";
/// How often a node without the link asks for it, and the holder checks it still has it.
const LEASE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A door on a controller, as the lists and taps need it.
#[derive(Debug, Clone)]
struct ControllerDoor {
    id: String,
    fail_mode: FailMode,
    open_seconds: u32,
    offline_max_age: u32,
    zone: Option<ListZone>,
}

/// What lintel currently wants each controller to hold.
#[derive(Default)]
struct Lists {
    /// Controller -> its doors, from the doors' drivers.
    doors: BTreeMap<String, Vec<ControllerDoor>>,
    /// Controller -> (version, signed list) last issued.
    issued: HashMap<String, (u64, Arc<String>)>,
}

/// The controllers on the MQTT link: what they ask is decided here, and what they must
/// hold is kept up to date from here.
pub struct Controllers {
    config: MqttConfig,
    /// The link while this node holds it.
    slot: Arc<MqttSlot>,
    directory: Arc<Directory>,
    decider: Arc<Decider>,
    authority: Arc<Authority>,
    workers: Workers,
    lists: Mutex<Lists>,
    taps: Mutex<RecentTaps>,
    /// One list refresh at a time: two would take two versions for the same content.
    refreshing: tokio::sync::Mutex<()>,
    /// Wakes the list keeper to issue a new version now.
    reissue: tokio::sync::Notify,
    /// When lintel last put its list back after a refusal, by controller.
    refusal_resent: Mutex<HashMap<String, tokio::time::Instant>>,
    taps_at_once: Arc<tokio::sync::Semaphore>,
}

/// Answers to recent taps by (controller, tap id), and the order they came in.
type TapKey = (String, String);
#[derive(Default)]
struct RecentTaps {
    answers: HashMap<TapKey, Arc<Vec<u8>>>,
    order: VecDeque<TapKey>,
}

impl Controllers {
    pub fn new(
        config: MqttConfig,
        slot: Arc<MqttSlot>,
        directory: Arc<Directory>,
        decider: Arc<Decider>,
        authority: Arc<Authority>,
        workers: Workers,
    ) -> Self {
        Self {
            config,
            slot,
            directory,
            decider,
            authority,
            workers,
            lists: Mutex::default(),
            taps: Mutex::default(),
            refreshing: tokio::sync::Mutex::new(()),
            reissue: tokio::sync::Notify::new(),
            refusal_resent: Mutex::default(),
            taps_at_once: Arc::new(tokio::sync::Semaphore::new(TAPS_AT_ONCE)),
        }
    }

    fn door_of(&self, controller: &str, door: &str) -> Option<ControllerDoor> {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        lists.doors.get(controller)?.iter().find(|d| d.id == door).cloned()
    }

    fn door_ids(&self, controller: &str) -> Vec<String> {
        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
        lists.doors.get(controller).map(|d| d.iter().map(|d| d.id.clone()).collect()).unwrap_or_default()
    }

    fn remembered_tap(&self, key: &TapKey) -> Option<Arc<Vec<u8>>> {
        self.taps.lock().unwrap_or_else(PoisonError::into_inner).answers.get(key).cloned()
    }

    fn remember_tap(&self, key: TapKey, answer: Arc<Vec<u8>>) {
        let mut taps = self.taps.lock().unwrap_or_else(PoisonError::into_inner);
        if taps.answers.insert(key.clone(), answer).is_none() {
            taps.order.push_back(key);
        }
        while taps.order.len() > REMEMBERED_TAPS {
            if let Some(old) = taps.order.pop_front() {
                taps.answers.remove(&old);
            }
        }
    }
}

impl Controllers {
    fn store(&self) -> &Store {
        &self.directory.store
    }

    /// Holds the link whenever this node holds its lease.
    pub fn spawn(self: &Arc<Self>) {
        let controllers = self.clone();
        self.workers.spawn(async move {
            let mut turns = controllers.workers.one_node_every(LINK_LEASE, LEASE_CHECK_EVERY);
            while turns.next().await {
                controllers.clone().hold_link().await;
            }
        });
    }

    /// Connects, answers the controllers and keeps their lists until this node loses the
    /// lease or shuts down; then lets the link go for the next holder.
    async fn hold_link(self: Arc<Self>) {
        let (link, events) = match MqttLink::start(&self.config) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, "the MQTT link does not start");
                return;
            }
        };
        tracing::info!("this node holds the MQTT link");
        self.slot.set(Some(link.clone()));
        // What another holder issued meanwhile is in the store, not here.
        self.lists.lock().unwrap_or_else(PoisonError::into_inner).issued.clear();
        tokio::select! {
            () = self.clone().serve_link(link.clone(), events) => {}
            () = self.lease_lost() => tracing::warn!("the MQTT link's lease is gone: letting the link go"),
        }
        self.slot.set(None);
        link.stop();
    }

    /// Resolves when this node no longer holds the link's lease.
    async fn lease_lost(&self) {
        loop {
            tokio::time::sleep(LEASE_CHECK_EVERY).await;
            if !self.workers.holds(LINK_LEASE).await {
                return;
            }
        }
    }

    /// Starts answering the controllers once lintel knows which doors each one drives,
    /// and keeps their lists in step from then on (until shutdown).
    async fn serve_link(self: Arc<Self>, link: Arc<MqttLink>, events: mpsc::Receiver<LinkEvent>) {
        loop {
            let index = self.directory.index().clone();
            match self.refresh_lists(&index, Utc::now().timestamp(), &OfflineDoors::All).await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, "allow-lists not built yet; trying again"),
            }
            if self.workers.unless_stopping(tokio::time::sleep(Duration::from_secs(1))).await.is_none() {
                return;
            }
        }
        tokio::join!(self.clone().receive(link, events), self.keep_lists());
    }

    async fn receive(self: Arc<Self>, link: Arc<MqttLink>, mut events: mpsc::Receiver<LinkEvent>) {
        while let Some(Some(event)) = self.workers.unless_stopping(events.recv()).await {
            match event {
                LinkEvent::Connected => {
                    link.announce_online().await;
                    // The broker may have lost the retained lists (a restart without persistence).
                    let issued: Vec<_> = {
                        let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
                        lists.issued.iter().map(|(c, (_, jws))| (c.clone(), jws.clone())).collect()
                    };
                    for (controller, jws) in issued {
                        self.publish_list(&controller, &jws).await;
                    }
                }
                LinkEvent::Delivery(delivery) => {
                    // Taps are decided side by side (their decisions share group commits);
                    // everything else in order of arrival.
                    if delivery.topic == Topic::Tap {
                        let permit = self.taps_at_once.clone().acquire_owned().await;
                        let (controllers, link) = (self.clone(), link.clone());
                        self.workers.spawn(async move {
                            controllers.handle_tap(&link, delivery).await;
                            drop(permit);
                        });
                    } else {
                        self.handle(&link, delivery).await;
                    }
                }
            }
        }
    }

    async fn handle(&self, link: &MqttLink, delivery: Delivery) {
        let controller = delivery.controller.clone();
        let outcome = match delivery.topic {
            Topic::Status => self.handle_status(&controller, &delivery.payload).await,
            Topic::ListAck => self.handle_list_ack(&controller, &delivery.payload).await,
            Topic::Upload => self.handle_upload(link, &controller, &delivery.payload).await,
            Topic::Input => self.handle_input(&controller, &delivery.payload).await,
            Topic::Tap => unreachable!("taps are handled on their own"),
        };
        // Acknowledged to the broker in every case: what failed comes again from the protocol
        // itself (a controller re-sends its upload until `upload/ack`, its status on every
        // connect, its list ack whenever lintel re-sends the list), whereas an unacknowledged
        // message would hold one of the broker's few in-flight slots until lintel reconnects.
        match outcome {
            Ok(()) => {}
            Err(Failure::Store(e)) => {
                tracing::error!(controller, topic = ?delivery.topic, error = %e, "MQTT message not recorded; the controller will send it again")
            }
            Err(Failure::Refused(why)) => {
                tracing::warn!(controller, topic = ?delivery.topic, why, "MQTT message refused");
            }
        }
        link.done(delivery).await;
    }

    async fn handle_status(&self, controller: &str, payload: &[u8]) -> Result<(), Failure> {
        // An empty retained message clears the status; treat it as offline.
        let status = if payload.is_empty() {
            Status { online: false, list_version: 0, firmware: None }
        } else {
            Status::parse(payload)?
        };
        let mut doors = self.door_ids(controller);
        if doors.is_empty() {
            // A door may have named it a moment ago: look again before calling it a stranger.
            let index = self.directory.index().clone();
            self.refresh_lists(&index, Utc::now().timestamp(), &OfflineDoors::All).await?;
            doors = self.door_ids(controller);
        }
        if doors.is_empty() {
            // No row for strangers: anyone on the broker could otherwise add controllers.
            return Err(Failure::Refused("a controller no door names announced itself; give it a door".into()));
        }
        self.store().set_controller_online(controller, status.online, &doors).await?;
        tracing::info!(controller, online = status.online, list_version = status.list_version, "controller status");
        if status.online {
            let issued = self.issued(controller);
            if let Some((version, jws)) = issued.filter(|(v, _)| *v != status.list_version) {
                tracing::info!(controller, version, "controller holds another list version; sending the current one");
                self.publish_list(controller, &jws).await;
            }
        }
        Ok(())
    }

    /// A door input: only from the controller that owns the door.
    async fn handle_input(&self, controller: &str, payload: &[u8]) -> Result<(), Failure> {
        let message = lintel_proto::controller::InputMessage::parse(payload)?;
        if !self.door_ids(controller).contains(&message.door) {
            return Err(Failure::Refused(format!(
                "an input for door {:?}, which is not on this controller",
                message.door
            )));
        }
        let input = lintel_proto::DoorInput { input: message.input, state: message.state };
        let by = crate::Actor::device(&format!("controller:{controller}"));
        match crate::alarms::report(&self.directory, &by, &message.door, input).await {
            Ok(_) => Ok(()),
            // Lost with the broker's copy acknowledged: the controller reports the next change.
            Err(e) => Err(Failure::Refused(format!("input not recorded: {e}"))),
        }
    }

    async fn handle_list_ack(&self, controller: &str, payload: &[u8]) -> Result<(), Failure> {
        let ack = ListAck::parse(payload)?;
        let Some(why) = &ack.refused else {
            self.store().list_acknowledged(controller, ack.version).await?;
            return Ok(());
        };
        // `version` of a refusal is the version the controller holds. Holding one at least as
        // new as lintel's (lintel's database restored from a backup) makes lintel issue the
        // next version above it; otherwise someone else's list may sit retained on the topic:
        // lintel puts its own back, at most once per RESEND_EVERY (two signers would
        // otherwise take turns as fast as the broker goes).
        tracing::warn!(controller, holds = ack.version, why, "the controller refused a list");
        if self.store().list_refused(controller, ack.version, why).await? {
            self.reissue.notify_one();
            return Ok(());
        }
        let due = {
            let mut last = self.refusal_resent.lock().unwrap_or_else(PoisonError::into_inner);
            let due = last.get(controller).is_none_or(|at| at.elapsed() >= RESEND_EVERY);
            if due {
                last.insert(controller.to_owned(), tokio::time::Instant::now());
            }
            due
        };
        if let Some((_, jws)) = self.issued(controller).filter(|_| due) {
            self.publish_list(controller, &jws).await;
        }
        Ok(())
    }

    /// Records the controller's offline decisions (each id once), then tells it which it may
    /// forget: all of them, including those recorded before.
    async fn handle_upload(&self, link: &MqttLink, controller: &str, payload: &[u8]) -> Result<(), Failure> {
        let upload = Upload::parse(payload)?;
        let own_doors = self.door_ids(controller);
        if own_doors.is_empty() {
            return Err(Failure::Refused("an upload from a controller no door names".into()));
        }
        let index = self.directory.index();
        let latest = Utc::now() + chrono::Duration::seconds(CLOCK_SKEW_SECONDS);
        let mut records = Vec::with_capacity(upload.decisions.len());
        for d in &upload.decisions {
            // Never true, whatever the controller's clock: acknowledged below, not recorded.
            if d.at > latest || d.allowed != (d.reason == Reason::Granted) {
                tracing::warn!(
                    controller,
                    id = d.id,
                    "an offline decision from the future or with a reason that contradicts it"
                );
                continue;
            }
            let mut event = offline_event(&index, controller, d);
            // Kept all the same (the door may have moved to another controller since), but marked.
            if !own_doors.contains(&d.door) {
                tracing::warn!(controller, door = d.door, "offline decision at a door this controller does not drive");
                event = event.with("unexpected_door", true);
            }
            let backup_code = d.backup_code.as_deref().and_then(parse_credential_id);
            records.push(OfflineRecord { upload_id: d.id.clone(), event, backup_code });
        }
        drop(index);
        let recorded = self.store().record_offline_decisions(controller, &records).await?;
        if let Some(version) = recorded.version {
            // Backup codes used up: gone from the index, and so from every list, at once.
            self.directory.lock().await.apply_at(&recorded.changes, version);
        }
        tracing::info!(
            controller,
            received = records.len(),
            recorded = recorded.events.len(),
            "offline decisions uploaded"
        );
        self.directory.publish(&recorded.events);
        for event in &recorded.events {
            // Second entries the controller let through offline, reconciled now.
            if let Err(e) = crate::alarms::passback_violation(&self.directory, event).await {
                tracing::warn!(controller, error = %e, "anti-passback alarm not raised");
            }
        }
        let ack = UploadAck { ids: upload.decisions.into_iter().map(|d| d.id).collect() };
        let payload = serde_json::to_vec(&ack).expect("an ack always serializes");
        link.publish(controller, "upload/ack", payload, false).await.map_err(|e| Failure::Refused(e.to_string()))?;
        Ok(())
    }

    async fn handle_tap(&self, link: &MqttLink, delivery: Delivery) {
        let controller = delivery.controller.clone();
        let tap = match Tap::parse(&delivery.payload) {
            Ok(tap) => tap,
            Err(e) => {
                tracing::warn!(controller, error = %e, "tap refused");
                link.done(delivery).await;
                return;
            }
        };
        if tap.deadline < Utc::now() {
            tracing::info!(
                controller,
                tap = tap.id,
                "tap arrived after its deadline; the controller decided it offline"
            );
            link.done(delivery).await;
            return;
        }
        let key = (controller.clone(), tap.id.clone());
        let answer = match self.remembered_tap(&key) {
            Some(answer) => Some(answer),
            None => match self.decide_tap(&controller, &tap).await {
                Ok(message) => {
                    let answer = Arc::new(serde_json::to_vec(&message).expect("a decision always serializes"));
                    self.remember_tap(key, answer.clone());
                    Some(answer)
                }
                Err(e) => {
                    // The controller decides it offline once its deadline passes.
                    tracing::error!(controller, error = %e, "tap not decided");
                    None
                }
            },
        };
        if let Some(answer) = answer
            && let Err(e) = link.publish(&controller, "decision", answer.to_vec(), false).await
        {
            tracing::warn!(controller, error = %e, "decision not published");
        }
        link.done(delivery).await;
    }

    async fn decide_tap(&self, controller: &str, tap: &Tap) -> Result<DecisionMessage> {
        let Some(door) = self.door_of(controller, &tap.door) else {
            // A controller asks only about its own doors; anything else is not recorded.
            tracing::warn!(controller, door = tap.door, "tap at a door this controller does not drive");
            return Ok(refusal(tap, Reason::UnknownDoor, None));
        };
        let ask = Ask {
            door: &tap.door,
            credential: &tap.credential,
            at: None,
            dry_run: false,
            source: Source::Keypad(format!("mqtt:{controller}")),
        };
        let decision = match self.decider.decide(ask).await {
            Ok(d) => d,
            // A malformed credential (a bad UID) is the device's mistake: a plain refusal.
            Err(ServiceError::Invalid(_)) => return Ok(refusal(tap, Reason::UnknownCredential, None)),
            Err(e) => return Err(e),
        };
        if !decision.allowed {
            return Ok(refusal(tap, decision.reason, decision.person_id));
        }
        Ok(DecisionMessage {
            id: tap.id.clone(),
            door: tap.door.clone(),
            allowed: true,
            reason: decision.reason,
            person_id: decision.person_id,
            actions: actions_for(true, door.open_seconds),
        })
    }

    fn issued(&self, controller: &str) -> Option<(u64, Arc<String>)> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner).issued.get(controller).cloned()
    }

    async fn publish_list(&self, controller: &str, jws: &str) {
        let Some(link) = self.slot.current() else {
            return;
        };
        if let Err(e) = link.publish(controller, "list", jws.as_bytes().to_vec(), true).await {
            tracing::warn!(controller, error = %e, "allow-list not published");
        }
    }

    /// Keeps every controller's list in step with the directory and the clock, and sends it
    /// again until the controller acknowledges it. A directory change rebuilds only the
    /// lists of the controllers whose doors it concerns; the clock, at each new period,
    /// all of them.
    async fn keep_lists(&self) {
        let mut tick = tokio::time::interval(LIST_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due = OfflineDoors::All;
        let mut seen_period: Option<i64> = None;
        let mut last_resend = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // A refusal asked for a new version: build the lists again now.
                () = self.reissue.notified() => due = OfflineDoors::All,
                () = self.workers.stopping() => return,
            }
            // Taken before the snapshot is read: a change that lands in between is built
            // now and again at the next tick, never missed.
            due.extend(self.directory.take_offline_touched());
            let index = self.directory.index().clone();
            let now = Utc::now().timestamp();
            let period_now = {
                let lists = self.lists.lock().unwrap_or_else(PoisonError::into_inner);
                let doors: Vec<ListDoor> = lists.doors.values().flatten().map(list_door).collect();
                now - now.rem_euclid(period(&doors))
            };
            if seen_period != Some(period_now) {
                due = OfflineDoors::All;
            }
            if !due.is_empty() {
                match self.refresh_lists(&index, now, &due).await {
                    Ok(()) => {
                        due = OfflineDoors::none();
                        seen_period = Some(period_now);
                    }
                    Err(e) => tracing::warn!(error = %e, "allow-lists not refreshed; trying again"),
                }
            }
            if last_resend.elapsed() >= RESEND_EVERY {
                last_resend = tokio::time::Instant::now();
                if let Err(e) = self.resend_drifting().await {
                    tracing::warn!(error = %e, "could not check controllers for drift");
                }
            }
        }
    }

    /// Builds again the lists of the controllers with a door in `touched`, and issues those
    /// whose content changed.
    async fn refresh_lists(
        &self,
        index: &Arc<lintel_core::Index>,
        now: i64,
        touched: &OfflineDoors,
    ) -> Result<(), StoreError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let store = self.store();
        let mut doors: BTreeMap<String, Vec<ControllerDoor>> = BTreeMap::new();
        let zones = store.door_zones().await?;
        for door in store.doors(None).await? {
            if let DriverConfig::Mqtt { controller, offline_max_age } = &door.driver {
                doors.entry(controller.clone()).or_default().push(ControllerDoor {
                    id: door.id.clone(),
                    fail_mode: door.fail_mode,
                    open_seconds: door.open_seconds,
                    offline_max_age: *offline_max_age,
                    zone: zones.get(&door.id).cloned(),
                });
            }
        }
        // Controllers no door names any more get an empty list, so they forget the old one.
        let mut rows: HashMap<String, ControllerRow> = HashMap::new();
        for row in store.controllers().await? {
            doors.entry(row.id.clone()).or_default();
            rows.insert(row.id.clone(), row);
        }
        // Rows first (written only for controllers new to lintel, not at every refresh): a
        // status that arrives once the doors are known must find its row.
        for controller in doors.keys() {
            if !rows.contains_key(controller) {
                rows.insert(controller.clone(), store.ensure_controller(controller, random_salt()).await?);
            }
        }
        self.lists.lock().unwrap_or_else(PoisonError::into_inner).doors = doors.clone();
        let due: Vec<(&String, &Vec<ControllerDoor>)> = doors
            .iter()
            .filter(|(controller, doors)| {
                self.issued(controller).is_none() || touched.concerns(doors.iter().map(|d| d.id.as_str()))
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let codes = Arc::new(store.card_revocation_codes().await?);
        for (controller, controller_doors) in due {
            let row = &rows[controller];
            let (mut list, digest) = build_off_the_workers(
                index.clone(),
                controller.clone(),
                controller_doors.iter().map(list_door).collect(),
                row.salt,
                codes.clone(),
                now,
            )
            .await;
            let known = self.issued(controller).is_some();
            if row.list_digest.as_deref() == Some(digest.as_str()) && known {
                continue;
            }
            // Same content as the stored version (lintel restarted): re-sign it under that
            // version rather than count up.
            list.version = if row.list_digest.as_deref() == Some(digest.as_str()) {
                row.list_version
            } else {
                store.next_list_version(controller, &digest, now, list.cards.len() as u64).await?
            };
            let (version, cards) = (list.version, list.cards.len());
            let authority = self.authority.clone();
            let jws = Arc::new(
                tokio::task::spawn_blocking(move || authority.sign_allow_list(&list))
                    .await
                    .expect("signing a list does not panic"),
            );
            tracing::info!(controller, version, cards, "allow-list issued");
            self.lists
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .issued
                .insert(controller.clone(), (version, jws.clone()));
            self.publish_list(controller, &jws).await;
        }
        Ok(())
    }

    async fn resend_drifting(&self) -> Result<(), StoreError> {
        for row in self.store().controllers().await? {
            if row.acked_version == row.list_version || row.online == Some(false) {
                continue;
            }
            if let Some((version, jws)) = self.issued(&row.id).filter(|(v, _)| *v == row.list_version) {
                tracing::debug!(
                    controller = row.id,
                    version,
                    acknowledged = row.acked_version,
                    "re-sending the allow-list"
                );
                self.publish_list(&row.id, &jws).await;
            }
        }
        Ok(())
    }
}

enum Failure {
    Store(StoreError),
    /// Bad input from the device: logged and dropped (redelivery would not help).
    Refused(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<lintel_proto::controller::PayloadError> for Failure {
    fn from(e: lintel_proto::controller::PayloadError) -> Self {
        Self::Refused(e.to_string())
    }
}

fn offline_event(index: &lintel_core::Index, controller: &str, d: &OfflineDecision) -> NewEvent {
    let mut event = NewEvent::new("decision").door(&d.door);
    event.at = d.at.timestamp_micros();
    event.allowed = Some(d.allowed);
    event.reason = Some(d.reason);
    // Who it was, as far as lintel knows the card now (a backup code's holder the store finds).
    if let Some(PresentedCredential::Card { uid, .. }) = &d.credential
        && let Ok(key) = lintel_core::CredentialKey::card(uid)
    {
        let found =
            index.decide(&lintel_core::Query { door: &d.door, key, digest: None, revocation_code: None, at: d.at });
        event.person_id = found.person.and_then(|pk| index.person(pk)).map(|p| p.id.to_string());
        event.credential_id = found.credential.map(credential_id);
        if found.credential.is_none() {
            event = event.with("uid", lintel_core::credential::normalize_uid(uid).unwrap_or_default());
        }
    }
    if d.anti_passback {
        event = event.with("anti_passback_local", true);
    }
    event
        .with(
            "detail",
            if d.allowed { "the controller let them in while offline" } else { "the controller refused while offline" },
        )
        .with(
            "credential_kind",
            match (&d.credential, &d.backup_code) {
                (Some(credential), _) => credential_kind(credential),
                (None, Some(_)) => "backup_code",
                // Typed, matched nothing: lintel is never told what.
                (None, None) => "keypad",
            },
        )
        .with("offline", true)
        .with("controller", controller)
        .with("offline_id", &d.id)
        .with("list_version", d.list_version)
        .with("fail_safe", d.fail_safe)
}

fn refusal(tap: &Tap, reason: Reason, person_id: Option<String>) -> DecisionMessage {
    DecisionMessage {
        id: tap.id.clone(),
        door: tap.door.clone(),
        allowed: false,
        reason,
        person_id,
        actions: actions_for(false, 0),
    }
}

/// Reads a controller's cards from the snapshot and builds its list, on a thread meant for
/// blocking work: at a hundred thousand cards this takes a while, which the async workers
/// (answering taps and requests) must not wait for.
async fn build_off_the_workers(
    index: Arc<lintel_core::Index>,
    controller: String,
    doors: Vec<ListDoor>,
    salt: [u8; 16],
    codes: Arc<HashMap<i64, String>>,
    now: i64,
) -> (AllowList, String) {
    tokio::task::spawn_blocking(move || {
        let ids: Vec<&str> = doors.iter().map(|d| d.id.as_str()).collect();
        let cards = index.offline_cards(&ids);
        let backup_codes = index.offline_backup_codes(&ids);
        let list = build_list(&ListInput {
            controller: &controller,
            version: 0,
            issued_at: now,
            salt,
            doors: &doors,
            cards: &cards,
            revocation_codes: &codes,
            codes: &backup_codes,
            credential_id,
        });
        let digest = content_digest(&list);
        (list, digest)
    })
    .await
    .expect("building a list does not panic")
}

fn list_door(d: &ControllerDoor) -> ListDoor {
    ListDoor {
        id: d.id.clone(),
        fail_mode: d.fail_mode,
        open_seconds: d.open_seconds,
        max_age_seconds: i64::from(d.offline_max_age),
        zone: d.zone.clone(),
    }
}

fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS has randomness");
    salt
}

/// Every controller a door names, with its doors, online state and list versions (the
/// allow-list lintel wants it to hold and the one it acknowledged). Read from the store
/// alone: a command lists them while the server holds the link.
pub async fn overview(store: &Store) -> Result<Vec<Controller>> {
    let mut doors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for door in store.doors(None).await? {
        if let DriverConfig::Mqtt { controller, .. } = door.driver {
            doors.entry(controller).or_default().push(door.id);
        }
    }
    let rows = store.controllers().await?;
    let mut out: Vec<Controller> = rows
        .into_iter()
        .map(|row| Controller {
            doors: doors.remove(&row.id).unwrap_or_default(),
            online: row.online,
            last_seen: row.last_seen.and_then(chrono::DateTime::from_timestamp_micros),
            list_version: row.list_version,
            acknowledged_version: row.acked_version,
            drift: row.list_version != row.acked_version,
            refused: row.refused,
            list_issued_at: row.list_issued_at.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
            cards: row.list_cards,
            id: row.id,
        })
        .collect();
    // Named by a door but not yet given a list (lintel started without [mqtt]).
    out.extend(doors.into_iter().map(|(id, doors)| Controller {
        id,
        doors,
        online: None,
        last_seen: None,
        list_version: 0,
        acknowledged_version: 0,
        drift: false,
        refused: None,
        list_issued_at: None,
        cards: 0,
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use lintel_proto::{CredentialKind, CredentialStatus, NewDoor};
    use lintel_store::EventFilter;
    use serde_json::json;

    use super::*;
    use crate::decide::LimiterConfig;

    /// Controllers over a temporary SQLite file, with door `front` on controller `ctl-1`,
    /// and a link to a broker that is not there (what is published waits in its queue).
    async fn controllers() -> (tempfile::TempDir, Arc<Controllers>) {
        let (dir, store) = crate::testing::store().await;
        add_door(&store, "front", "ctl-1").await;
        let directory = Directory::open(store, Duration::from_secs(3600)).await.expect("directory loads");
        (dir, over(directory))
    }

    /// Controllers as a start of lintel builds them: nothing issued yet in memory.
    fn over(directory: Arc<Directory>) -> Arc<Controllers> {
        let decider = Arc::new(Decider::new(directory.clone(), [7; 32], LimiterConfig::default()));
        let authority = Arc::new(Authority::from_secret_bytes(&[9; 32]).expect("authority"));
        let mqtt =
            MqttConfig { url: "mqtt://127.0.0.1:1".into(), topic_prefix: "lintel".into(), client_id: "t".into() };
        let (link, _events) = MqttLink::start(&mqtt).expect("link");
        let slot = Arc::new(MqttSlot::default());
        slot.set(Some(link));
        let workers = Workers::new(directory.store.clone());
        Arc::new(Controllers::new(mqtt, slot, directory, decider, authority, workers))
    }

    async fn add_door(store: &Store, id: &str, controller: &str) {
        let door = NewDoor {
            id: id.into(),
            name: id.into(),
            driver: DriverConfig::Mqtt { controller: controller.into(), offline_max_age: 86_400 },
            fail_mode: FailMode::default(),
            required_skill: None,
            open_seconds: None,
            attendance: None,
            site: None,
            unlock_schedule: None,
            egress: None,
            held_open_seconds: None,
        };
        store.create_door(&door, 5).await.expect("door");
    }

    async fn refresh(controllers: &Controllers) {
        let index = controllers.directory.index().clone();
        controllers.refresh_lists(&index, Utc::now().timestamp(), &OfflineDoors::All).await.expect("lists refreshed");
    }

    async fn only_controller(controllers: &Controllers) -> Controller {
        let mut all = overview(controllers.store()).await.expect("overview");
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[tokio::test]
    async fn a_list_gets_a_new_version_only_when_its_content_changes() {
        let (_dir, controllers) = controllers().await;
        let named = only_controller(&controllers).await;
        assert_eq!((named.id.as_str(), named.doors.clone()), ("ctl-1", vec!["front".to_owned()]));
        assert_eq!((named.list_version, named.online, named.drift), (0, None, false), "named by a door, no list yet");

        refresh(&controllers).await;
        let issued = only_controller(&controllers).await;
        assert_eq!((issued.list_version, issued.acknowledged_version, issued.drift), (1, 0, true));
        assert!(issued.list_issued_at.is_some());

        refresh(&controllers).await;
        assert_eq!(only_controller(&controllers).await.list_version, 1, "same content, same version");
        let restarted = over(controllers.directory.clone());
        refresh(&restarted).await;
        assert_eq!(only_controller(&restarted).await.list_version, 1, "re-signed under its version after a restart");
        assert_eq!(restarted.issued("ctl-1").map(|(version, _)| version), Some(1));

        add_door(controllers.store(), "back", "ctl-1").await;
        refresh(&controllers).await;
        let grown = only_controller(&controllers).await;
        assert_eq!((grown.list_version, grown.doors.len()), (2, 2), "{grown:?}");
    }

    fn offline_decision(id: &str, door: &str, at: chrono::DateTime<Utc>) -> serde_json::Value {
        json!({
            "id": id,
            "door": door,
            "at": at,
            "credential": {"kind": "card", "uid": "04A1B2C3"},
            "allowed": false,
            "reason": "unknown_credential",
            "list_version": 1,
        })
    }

    async fn offline_events(store: &Store) -> Vec<lintel_proto::Event> {
        let filter = EventFilter { kind: Some("decision".into()), limit: 100, ..EventFilter::default() };
        store.events(&filter).await.expect("events")
    }

    #[tokio::test]
    async fn an_upload_uses_up_backup_codes_and_nothing_else() {
        let (_dir, controllers) = controllers().await;
        let store = controllers.store().clone();
        crate::backup_codes::issue(&store, "front", 2).await.expect("backup codes");
        let card = crate::credentials::card("04A1B2C3", None).expect("a card").record;
        store.issue_credentials("backup-front", &[card]).await.expect("the card issued");
        let issued = store.person_credentials("backup-front").await.expect("credentials");
        let id_of = |kind| issued.iter().find(|c| c.kind == kind).map(|c| c.id.clone()).expect("issued");
        let (code, card) = (id_of(CredentialKind::BackupCode), id_of(CredentialKind::Card));
        let revoked = issued.iter().rfind(|c| c.kind == CredentialKind::BackupCode).map(|c| c.id.clone()).expect("two");
        store.revoke_credential(&revoked, "revoked").await.expect("revoked");
        controllers.directory.follow().await.expect("the index follows");
        assert_eq!(controllers.directory.index().offline_backup_codes(&["front"]).len(), 1);
        let entry = |id: &str, named: &str| {
            json!({"id": id, "door": "front", "at": Utc::now(), "allowed": true, "reason": "granted",
                "list_version": 1, "backup_code": named})
        };
        // A controller that names a card as the code it let in must not end the card.
        // One revoked meanwhile (the controller's list was older) is no conflict: never used.
        let upload = json!({"decisions": [entry("k-1", &card), entry("k-2", &code), entry("k-3", &revoked)]});
        let link = controllers.slot.current().expect("a link");
        refresh(&controllers).await;
        let handled = controllers.handle_upload(&link, "ctl-1", &serde_json::to_vec(&upload).expect("json")).await;
        assert!(handled.is_ok());

        let status = |id: &str| {
            let store = store.clone();
            let id = id.to_owned();
            async move {
                let all = store.person_credentials("backup-front").await.expect("credentials");
                all.into_iter().find(|c| c.id == id).map(|c| c.status).expect("still there")
            }
        };
        assert_eq!(status(&card).await, CredentialStatus::Active);
        assert_eq!(status(&code).await, CredentialStatus::Used);
        assert!(
            controllers.directory.index().offline_backup_codes(&["front"]).is_empty(),
            "gone from the index at once"
        );
        let events = offline_events(controllers.store()).await;
        let named = |id: &str| events.iter().find(|e| e.data["offline_id"] == id).expect("recorded").clone();
        assert_eq!(named("k-1").data["backup_code_unknown"], true);
        assert_eq!(named("k-1").credential_id, None);
        assert_eq!(named("k-2").credential_id.as_deref(), Some(code.as_str()));
        assert_eq!(named("k-2").person_id.as_deref(), Some("backup-front"));
        assert_eq!(named("k-3").data["backup_code_revoked"], true);
        assert_eq!(status(&revoked).await, CredentialStatus::Revoked);
        let conflicts = EventFilter { kind: Some("backup_code.conflict".into()), limit: 10, ..EventFilter::default() };
        assert!(store.events(&conflicts).await.expect("events").is_empty());
    }

    #[tokio::test]
    async fn an_upload_sent_again_is_recorded_once() {
        let (_dir, controllers) = controllers().await;
        refresh(&controllers).await;
        let now = Utc::now();
        let upload = serde_json::to_vec(&json!({"decisions": [
            offline_decision("d-1", "front", now - chrono::Duration::minutes(5)),
            offline_decision("d-2", "elsewhere", now - chrono::Duration::minutes(4)),
            offline_decision("d-3", "front", now + chrono::Duration::hours(1)),
        ]}))
        .expect("json");

        let link = controllers.slot.current().expect("a link");
        for _ in 0..2 {
            let handled = controllers.handle_upload(&link, "ctl-1", &upload).await;
            assert!(handled.is_ok(), "the upload is acknowledged every time");
        }
        let events = offline_events(controllers.store()).await;
        let mut ids: Vec<&str> = events.iter().filter_map(|e| e.data["offline_id"].as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["d-1", "d-2"], "each once; the one from the future never");
        let elsewhere = events.iter().find(|e| e.data["offline_id"] == "d-2").expect("d-2");
        assert_eq!(elsewhere.data["unexpected_door"], true);
        assert_eq!(elsewhere.data["uid"], "04A1B2C3", "an unknown card is named by its UID");

        let stranger = controllers.handle_upload(&link, "ctl-9", &upload).await;
        assert!(matches!(stranger, Err(Failure::Refused(_))), "no door names ctl-9");
        assert_eq!(offline_events(controllers.store()).await.len(), 2);
    }
}
