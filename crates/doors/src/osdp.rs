//! OSDP readers: lintel as the control panel (CP) of OSDP readers on serial lines (RS-485).
//!
//! The protocol (framing, polling, Secure Channel) is libosdp's, the reference
//! implementation, through its Rust binding. Its API is synchronous, so each serial port
//! gets a thread of its own that polls the port's readers, hands card reads out as
//! [`ReaderEvent`]s and sends the LED, buzzer and output commands queued with
//! [`Readers::answer`]. This module decides nothing: the server does.
//!
//! Secure Channel is enforced for every reader with a key: no fallback to the public
//! default key (SCBK-D) nor to plain text, and the default key is never accepted as a
//! configured key. Install mode lets a new reader take its key once: lintel opens a
//! session with SCBK-D, sets the configured key (KEYSET), and from then on enforces it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libosdp::{
    Channel, ChannelError, ControlPanel, ControlPanelBuilder, OsdpCommand, OsdpCommandBuzzer, OsdpCommandLed,
    OsdpCommandOutput, OsdpEvent, OsdpFlag, OsdpLedColor, OsdpLedParams, OsdpStatusReportType, PdInfoBuilder,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// The Secure Channel base key that every reader knows from the factory (0x30..0x3F).
const SCBK_DEFAULT: [u8; 16] = *b"0123456789:;<=>?";

/// How often the port threads run libosdp's state machine. libosdp asks for at least every
/// 50 ms; more often shortens the way from a card read to its answer.
const TICK: Duration = Duration::from_millis(5);

/// How long a port thread waits before trying again to open a port that failed.
const REOPEN_AFTER: Duration = Duration::from_secs(5);

const BAUD_RATES: [u32; 6] = [9600, 19200, 38400, 57600, 115200, 230400];

#[derive(Debug, thiserror::Error)]
pub enum OsdpError {
    #[error("reader {reader:?}: scbk must be 32 hex digits (16 bytes)")]
    BadKey { reader: String },
    #[error(
        "reader {reader:?}: scbk is the public default key SCBK-D; give the reader a key of its own \
         (e.g. `openssl rand -hex 16`) and use install_mode to hand it over"
    )]
    DefaultKey { reader: String },
    #[error("reader {reader:?}: install_mode hands the configured scbk to the reader, so it needs one")]
    InstallWithoutKey { reader: String },
    #[error("reader {reader:?}: address {address} is not an OSDP address (0-126)")]
    Address { reader: String, address: u8 },
    #[error("reader {reader:?}: baud {baud} is not one of {BAUD_RATES:?}")]
    Baud { reader: String, baud: u32 },
    #[error("reader {0:?}: a name and a port are non-empty text without control characters")]
    BadText(String),
    #[error("reader name {0:?} is used twice")]
    DuplicateName(String),
    #[error("readers {first:?} and {second:?} both have address {address} on {port}")]
    DuplicateAddress { port: String, address: u8, first: String, second: String },
    #[error("the readers on {port} disagree on its baud rate ({first} and {second})")]
    PortBaud { port: String, first: u32, second: u32 },
    #[error("no OSDP reader is called {0:?}")]
    UnknownReader(String),
    #[error("the OSDP port thread of reader {0:?} is gone")]
    PortGone(String),
    #[error("OSDP reader {0:?} is offline")]
    Offline(String),
}

/// A Secure Channel base key; never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Scbk([u8; 16]);

impl Scbk {
    /// Parses 32 hex digits; refuses the public default key.
    pub fn parse(reader: &str, hex_digits: &str) -> Result<Self, OsdpError> {
        let mut key = [0u8; 16];
        hex::decode_to_slice(hex_digits.trim(), &mut key)
            .map_err(|_| OsdpError::BadKey { reader: reader.to_owned() })?;
        if key == SCBK_DEFAULT {
            return Err(OsdpError::DefaultKey { reader: reader.to_owned() });
        }
        Ok(Self(key))
    }
}

impl fmt::Debug for Scbk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scbk(..)")
    }
}

/// One reader on a serial port.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// How lintel calls the reader (in logs, events and door drivers).
    pub name: String,
    /// The serial device, e.g. `/dev/ttyUSB0`.
    pub port: String,
    pub address: u8,
    pub baud: u32,
    /// None: plain text (no Secure Channel).
    pub scbk: Option<Scbk>,
    /// Hand `scbk` to a reader that still has the default key, once.
    pub install_mode: bool,
}

/// Checks a set of readers before any port is opened.
pub fn check(readers: &[ReaderConfig]) -> Result<(), OsdpError> {
    let mut names = std::collections::HashSet::new();
    let mut addresses: HashMap<(&str, u8), &str> = HashMap::new();
    let mut bauds: HashMap<&str, u32> = HashMap::new();
    let text = |t: &str| !t.trim().is_empty() && !t.chars().any(char::is_control);
    for r in readers {
        if !text(&r.name) || !text(&r.port) {
            return Err(OsdpError::BadText(r.name.clone()));
        }
        if !names.insert(r.name.as_str()) {
            return Err(OsdpError::DuplicateName(r.name.clone()));
        }
        if r.address > 126 {
            return Err(OsdpError::Address { reader: r.name.clone(), address: r.address });
        }
        if !BAUD_RATES.contains(&r.baud) {
            return Err(OsdpError::Baud { reader: r.name.clone(), baud: r.baud });
        }
        if r.install_mode && r.scbk.is_none() {
            return Err(OsdpError::InstallWithoutKey { reader: r.name.clone() });
        }
        if let Some(first) = addresses.insert((&r.port, r.address), &r.name) {
            return Err(OsdpError::DuplicateAddress {
                port: r.port.clone(),
                address: r.address,
                first: first.to_owned(),
                second: r.name.clone(),
            });
        }
        if let Some(first) = bauds.insert(&r.port, r.baud).filter(|b| *b != r.baud) {
            return Err(OsdpError::PortBaud { port: r.port.clone(), first, second: r.baud });
        }
    }
    Ok(())
}

/// What a reader reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderEvent {
    /// A card was read; `uid` is upper-case hex (see `lintel_core::card_bits`).
    Card { reader: String, uid: String, bits: usize },
    /// Keys were pressed on the reader's keypad, as OSDP sends them: ASCII digits, `0x7F`
    /// for `*` and `0x0D` for `#`.
    Keys { reader: String, keys: Vec<u8> },
    /// The reader started or stopped answering polls (`secure`: over Secure Channel). A
    /// reader with a key is online only over Secure Channel.
    Status { reader: String, online: bool, secure: bool },
    /// The reader in install mode took its key and works with it: install mode is over.
    KeySet { reader: String },
    /// The reader's inputs (contacts wired to it: a door position switch, an exit button),
    /// each active or not, in input order (OSDP's input status report).
    Inputs { reader: String, active: Vec<bool> },
    /// The reader's own tamper switch (OSDP's local status report).
    Tamper { reader: String, active: bool },
}

/// What lintel tells a reader after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Green LED and a short beep; and the output switched on for a while, if given.
    Allowed { release: Option<Release> },
    /// Red LED and two long beeps.
    Denied,
}

/// Switch a reader's output (a relay wired to the strike) on for some seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub output: u8,
    pub seconds: u32,
}

/// The OSDP commands for an answer. Times are in OSDP's units of 100 ms.
fn commands_for(answer: Answer) -> Vec<OsdpCommand> {
    let (color, led_time, beep_on, beep_off, beeps) = match answer {
        Answer::Allowed { .. } => (OsdpLedColor::Green, 30, 2, 0, 1),
        Answer::Denied => (OsdpLedColor::Red, 30, 5, 2, 2),
    };
    let led = OsdpCommandLed {
        reader: 0,
        led_number: 0,
        // Control code 2: show this temporary state until the timer runs out, then go
        // back to the permanent state (left as it is: code 0).
        temporary: OsdpLedParams {
            control_code: 2,
            on_count: led_time,
            off_count: 0,
            on_color: color,
            off_color: OsdpLedColor::None,
            timer_count: u16::from(led_time),
        },
        permanent: OsdpLedParams::default(),
    };
    // Tone code 2: the reader's default tone.
    let buzzer =
        OsdpCommandBuzzer { reader: 0, control_code: 2, on_count: beep_on, off_count: beep_off, rep_count: beeps };
    let mut commands = vec![OsdpCommand::Led(led), OsdpCommand::Buzzer(buzzer)];
    if let Answer::Allowed { release: Some(r) } = answer {
        commands.push(release_command(r));
    }
    commands
}

/// Control code 5: temporarily on, back to the permanent state when the timer ends.
fn release_command(r: Release) -> OsdpCommand {
    let timer = u16::try_from(r.seconds.saturating_mul(10)).unwrap_or(u16::MAX);
    OsdpCommand::Output(OsdpCommandOutput { output_no: r.output, control_code: 5, timer_count: timer })
}

type PortCommand = (i32, Vec<OsdpCommand>);

/// Where a reader's commands go, and whether it answers (kept by its port thread).
struct Route {
    queue: Sender<PortCommand>,
    index: i32,
    online: Arc<AtomicBool>,
}

/// The running readers: where to send their commands.
#[derive(Clone)]
pub struct Readers {
    routes: Arc<BTreeMap<String, Route>>,
    stop: Arc<AtomicBool>,
}

impl fmt::Debug for Readers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readers").field("readers", &self.routes.keys().collect::<Vec<_>>()).finish()
    }
}

impl Readers {
    /// Checks the readers, starts a thread per serial port, and returns the handle for
    /// commands and the stream of what the readers report.
    pub fn start(readers: Vec<ReaderConfig>) -> Result<(Self, UnboundedReceiver<ReaderEvent>), OsdpError> {
        check(&readers)?;
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut ports: BTreeMap<String, Vec<ReaderConfig>> = BTreeMap::new();
        for r in readers {
            ports.entry(r.port.clone()).or_default().push(r);
        }
        let mut routes = BTreeMap::new();
        for (port, readers) in ports {
            let (commands, queue) = std::sync::mpsc::channel();
            let mut flags = Vec::with_capacity(readers.len());
            for (i, r) in readers.iter().enumerate() {
                let online = Arc::new(AtomicBool::new(false));
                flags.push(online.clone());
                routes.insert(r.name.clone(), Route { queue: commands.clone(), index: i as i32, online });
            }
            let events = events.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("osdp {port}"))
                .spawn(move || run_port(&port, readers, flags, queue, events, &stop))
                .expect("a thread starts");
        }
        let readers = Self { routes: Arc::new(routes), stop };
        // One set of readers per process: the server starts them once.
        let _ = RUNNING.set(readers.clone());
        Ok((readers, received))
    }

    /// Queues what the reader shows and sounds after a decision.
    pub fn answer(&self, reader: &str, answer: Answer) -> Result<(), OsdpError> {
        self.send(reader, commands_for(answer))
    }

    /// Switches the reader's output on for some seconds (a door released from the API).
    pub fn release(&self, reader: &str, release: Release) -> Result<(), OsdpError> {
        self.send(reader, vec![release_command(release)])
    }

    /// Sets the output's permanent state (control code 2: on, 1: off, either ending a
    /// timed state): a door held unlocked, or its hold ended.
    pub fn hold(&self, reader: &str, output: u8, on: bool) -> Result<(), OsdpError> {
        let control_code = if on { 2 } else { 1 };
        self.send(
            reader,
            vec![OsdpCommand::Output(OsdpCommandOutput { output_no: output, control_code, timer_count: 0 })],
        )
    }

    fn send(&self, reader: &str, commands: Vec<OsdpCommand>) -> Result<(), OsdpError> {
        let route = self.routes.get(reader).ok_or_else(|| OsdpError::UnknownReader(reader.to_owned()))?;
        if !route.online.load(Ordering::Relaxed) {
            return Err(OsdpError::Offline(reader.to_owned()));
        }
        route.queue.send((route.index, commands)).map_err(|_| OsdpError::PortGone(reader.to_owned()))
    }

    /// Stops the port threads (they close their ports).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The readers lintel polls, for the door drivers that switch their outputs.
static RUNNING: std::sync::OnceLock<Readers> = std::sync::OnceLock::new();

/// The readers this process polls.
pub fn polled() -> Vec<String> {
    RUNNING.get().map(|readers| readers.routes.keys().cloned().collect()).unwrap_or_default()
}

/// Whether this process polls `reader`.
pub fn polls(reader: &str) -> bool {
    RUNNING.get().is_some_and(|readers| readers.routes.contains_key(reader))
}

/// The `osdp` door driver: a reader's output, switched on for the opening.
pub(crate) struct OutputDriver {
    pub reader: String,
    pub output: u8,
}

impl crate::Driver for OutputDriver {
    fn kind(&self) -> &'static str {
        "osdp"
    }

    fn open(&self, seconds: u32) -> futures::future::BoxFuture<'_, Result<crate::Opening, crate::DriverError>> {
        self.queue(|readers| readers.release(&self.reader, Release { output: self.output, seconds }))
    }

    fn hold(&self, on: bool) -> futures::future::BoxFuture<'_, Result<crate::Opening, crate::DriverError>> {
        self.queue(|readers| readers.hold(&self.reader, self.output, on))
    }
}

impl OutputDriver {
    fn queue(
        &self,
        send: impl FnOnce(&Readers) -> Result<(), OsdpError>,
    ) -> futures::future::BoxFuture<'_, Result<crate::Opening, crate::DriverError>> {
        let sent = match RUNNING.get() {
            Some(readers) => send(readers).map_err(|e| crate::DriverError::Config(e.to_string())),
            None => Err(crate::DriverError::Config(format!("no [[osdp.readers]] is called {:?}", self.reader))),
        };
        // Queued for the reader; libosdp does not tell when it acknowledged the command.
        Box::pin(async move { sent.map(|()| crate::Opening { confirmed: false }) })
    }
}

/// A serial port, raw, 8N1, without blocking.
pub struct SerialLink {
    port: serialport::TTYPort,
    /// Set when the port fails (not a mere "no data yet"): the port thread reopens it.
    broken: Arc<AtomicBool>,
}

fn open_serial(path: &str, baud: u32) -> std::io::Result<SerialLink> {
    let port = serialport::new(path, baud).timeout(Duration::ZERO).open_native()?;
    Ok(SerialLink { port, broken: Arc::default() })
}

impl SerialLink {
    fn failed(&self, e: std::io::Error) -> Result<usize, ChannelError> {
        if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) {
            return Ok(0);
        }
        self.broken.store(true, Ordering::Relaxed);
        Err(e.into())
    }
}

impl Channel for SerialLink {
    fn get_id(&self) -> i32 {
        0
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        std::io::Read::read(&mut self.port, buf).or_else(|e| self.failed(e))
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, ChannelError> {
        std::io::Write::write(&mut self.port, buf).or_else(|e| self.failed(e))
    }

    /// libosdp flushes before it sends: stale bytes from a broken frame are dropped.
    fn flush(&mut self) -> Result<(), ChannelError> {
        use serialport::SerialPort;
        self.port.clear(serialport::ClearBuffer::Input).map_err(|_| ChannelError::TransportError)
    }

    fn close(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// What the port thread remembers about a reader.
struct Polled {
    /// Its configuration; `install_mode` is cleared once the reader took its key.
    config: ReaderConfig,
    /// Online and usable, shared with [`Readers`].
    usable: Arc<AtomicBool>,
    online: bool,
    secure: bool,
}

/// Why a port's polling ended.
enum Ended {
    /// lintel stops, or nobody listens any more.
    Stopped,
    /// The port failed (a USB adapter unplugged): open it again.
    PortFailed,
}

fn run_port(
    port: &str,
    readers: Vec<ReaderConfig>,
    flags: Vec<Arc<AtomicBool>>,
    queue: Receiver<PortCommand>,
    events: UnboundedSender<ReaderEvent>,
    stop: &AtomicBool,
) {
    let baud = readers[0].baud;
    let mut polled: Vec<Polled> = readers
        .into_iter()
        .zip(flags)
        .map(|(config, usable)| Polled { config, usable, online: false, secure: false })
        .collect();
    loop {
        let link = match open_serial(port, baud) {
            Ok(link) => link,
            Err(e) => {
                tracing::error!(port, error = %e, "cannot open the OSDP port; trying again in 5 s");
                std::thread::sleep(REOPEN_AFTER);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
        };
        let broken = link.broken.clone();
        let configs: Vec<ReaderConfig> = polled.iter().map(|r| r.config.clone()).collect();
        let cp = match control_panel(link, &configs) {
            Ok(cp) => cp,
            Err(e) => {
                tracing::error!(port, error = %e, "libosdp refused the readers of this port");
                return;
            }
        };
        tracing::info!(port, readers = polled.len(), "polling OSDP readers");
        match poll(cp, &mut polled, &broken, &queue, &events, stop) {
            Ended::Stopped => return,
            Ended::PortFailed => {
                tracing::error!(port, "the OSDP port failed; opening it again in 5 s");
                for r in polled.iter_mut().filter(|r| r.online) {
                    (r.online, r.secure) = (false, false);
                    r.usable.store(false, Ordering::Relaxed);
                    let status = ReaderEvent::Status { reader: r.config.name.clone(), online: false, secure: false };
                    if events.send(status).is_err() {
                        return;
                    }
                }
                std::thread::sleep(REOPEN_AFTER);
            }
        }
    }
}

/// Runs libosdp's state machine for one opening of a port.
fn poll(
    mut cp: ControlPanel,
    polled: &mut [Polled],
    broken: &AtomicBool,
    queue: &Receiver<PortCommand>,
    events: &UnboundedSender<ReaderEvent>,
    stop: &AtomicBool,
) -> Ended {
    let received: Arc<Mutex<Vec<(i32, OsdpEvent)>>> = Arc::default();
    let inbox = received.clone();
    cp.set_event_callback(move |pd, event| {
        inbox.lock().expect("the port thread never panics holding it").push((pd, event));
        0
    });
    while !stop.load(Ordering::Relaxed) {
        cp.refresh();
        if broken.load(Ordering::Relaxed) {
            return Ended::PortFailed;
        }
        for (i, r) in polled.iter_mut().enumerate() {
            let (online, secure) = (cp.is_online(i as i32), cp.is_sc_active(i as i32));
            if (online, secure) != (r.online, r.secure) {
                (r.online, r.secure) = (online, secure);
                // A reader with a key that answers in clear (libosdp's fallback in install
                // mode) is not one lintel works with.
                let usable = online && (secure || r.config.scbk.is_none());
                if online && !usable {
                    tracing::error!(reader = r.config.name, "reader answers without Secure Channel; ignoring it");
                }
                r.usable.store(usable, Ordering::Relaxed);
                let status = ReaderEvent::Status { reader: r.config.name.clone(), online: usable, secure };
                if events.send(status).is_err() {
                    return Ended::Stopped;
                }
            }
            if r.config.install_mode && online && secure {
                // Online over Secure Channel means the configured key works (a session
                // with SCBK-D is never online: libosdp sets the key first).
                cp.set_flag(i as i32, OsdpFlag::EnforceSecure, true);
                r.config.install_mode = false;
                tracing::warn!(
                    reader = r.config.name,
                    "install mode is over: the reader has its key; remove install_mode from the configuration"
                );
                if events.send(ReaderEvent::KeySet { reader: r.config.name.clone() }).is_err() {
                    return Ended::Stopped;
                }
            }
        }
        let arrived = std::mem::take(&mut *received.lock().expect("the callback never panics holding it"));
        for (pd, event) in arrived {
            let Some(r) = usize::try_from(pd).ok().and_then(|i| polled.get(i)) else { continue };
            if let Some(read) = reader_event(r, cp.is_sc_active(pd), event)
                && events.send(read).is_err()
            {
                return Ended::Stopped;
            }
        }
        loop {
            match queue.try_recv() {
                Ok((pd, commands)) => {
                    for command in commands {
                        if cp.send_command(pd, command).is_err() {
                            let name = &polled[pd as usize].config.name;
                            tracing::warn!(reader = name, "command not sent: the reader is not online");
                            break;
                        }
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ended::Stopped,
            }
        }
        std::thread::sleep(TICK);
    }
    Ended::Stopped
}

/// A reader's event as lintel takes it: card reads, key presses, input and tamper status,
/// and only over Secure Channel from a reader that has a key.
fn reader_event(r: &Polled, secure: bool, event: OsdpEvent) -> Option<ReaderEvent> {
    let reader = &r.config.name;
    let card = match event {
        OsdpEvent::Status(_) if r.config.scbk.is_some() && !secure => {
            tracing::warn!(reader, "status refused: it came without Secure Channel from a reader with a key");
            return None;
        }
        OsdpEvent::Status(status) => {
            let entries = &status.report[..status.nr_entries.min(status.report.len())];
            return match status.type_ {
                OsdpStatusReportType::Input => Some(ReaderEvent::Inputs {
                    reader: reader.clone(),
                    active: entries.iter().map(|s| *s != 0).collect(),
                }),
                // The local status report: tamper first, then power.
                OsdpStatusReportType::Local => {
                    entries.first().map(|t| ReaderEvent::Tamper { reader: reader.clone(), active: *t != 0 })
                }
                OsdpStatusReportType::Output | OsdpStatusReportType::Remote => None,
            };
        }
        OsdpEvent::CardRead(card) => card,
        OsdpEvent::KeyPress(_) if r.config.scbk.is_some() && !secure => {
            tracing::warn!(reader, "keys refused: they came without Secure Channel from a reader with a key");
            return None;
        }
        OsdpEvent::KeyPress(keys) => return Some(ReaderEvent::Keys { reader: reader.clone(), keys: keys.data }),
        _ => {
            tracing::debug!(reader, "reader event ignored (not a card read or keys)");
            return None;
        }
    };
    if r.config.scbk.is_some() && !secure {
        tracing::warn!(reader, "card read refused: it came without Secure Channel from a reader with a key");
        return None;
    }
    match lintel_core::card_bits::uid_from_bits(card.nr_bits, &card.data) {
        Ok(uid) => Some(ReaderEvent::Card { reader: reader.clone(), uid, bits: card.nr_bits }),
        Err(e) => {
            tracing::warn!(reader, error = %e, "card read refused");
            None
        }
    }
}

fn control_panel<L: Channel + 'static>(link: L, readers: &[ReaderConfig]) -> Result<ControlPanel, libosdp::OsdpError> {
    let mut infos = Vec::with_capacity(readers.len());
    for r in readers {
        let mut info = PdInfoBuilder::new().name(&r.name)?.address(i32::from(r.address))?.baud_rate(r.baud as i32)?;
        if let Some(Scbk(key)) = r.scbk {
            info = info.secure_channel_key(key);
            if !r.install_mode {
                info = info.flag(OsdpFlag::EnforceSecure);
            }
        }
        infos.push(info);
    }
    ControlPanelBuilder::new().add_channel(Box::new(link), infos).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(name: &str, port: &str, address: u8) -> ReaderConfig {
        ReaderConfig { name: name.into(), port: port.into(), address, baud: 9600, scbk: None, install_mode: false }
    }

    #[test]
    fn keys_are_32_hex_digits_and_never_the_default() {
        assert!(Scbk::parse("r", "000102030405060708090A0B0C0D0E0F").is_ok());
        assert!(matches!(Scbk::parse("r", "0001"), Err(OsdpError::BadKey { .. })));
        assert!(matches!(Scbk::parse("r", "zz0102030405060708090A0B0C0D0E0F"), Err(OsdpError::BadKey { .. })));
        assert!(matches!(Scbk::parse("r", "303132333435363738393A3B3C3D3E3F"), Err(OsdpError::DefaultKey { .. })));
        assert!(matches!(Scbk::parse("r", "303132333435363738393a3b3c3d3e3f"), Err(OsdpError::DefaultKey { .. })));
        let key = Scbk::parse("r", "000102030405060708090A0B0C0D0E0F").unwrap();
        assert_eq!(format!("{key:?}"), "Scbk(..)");
    }

    #[test]
    fn readers_are_checked_together() {
        assert!(check(&[reader("a", "/dev/ttyS0", 1), reader("b", "/dev/ttyS0", 2)]).is_ok());
        assert!(check(&[reader("a", "/dev/ttyS0", 1), reader("b", "/dev/ttyS1", 1)]).is_ok());
        assert!(matches!(
            check(&[reader("a", "/dev/ttyS0", 1), reader("b", "/dev/ttyS0", 1)]),
            Err(OsdpError::DuplicateAddress { address: 1, .. })
        ));
        assert!(matches!(
            check(&[reader("a", "/dev/ttyS0", 1), reader("a", "/dev/ttyS1", 2)]),
            Err(OsdpError::DuplicateName(_))
        ));
        assert!(matches!(check(&[reader("a", "/dev/ttyS0", 127)]), Err(OsdpError::Address { .. })));
        assert!(matches!(check(&[reader("a", "/dev/tty\0", 1)]), Err(OsdpError::BadText(_))));
        assert!(matches!(check(&[reader(" ", "/dev/ttyS0", 1)]), Err(OsdpError::BadText(_))));
        assert!(matches!(
            check(&[ReaderConfig { baud: 1200, ..reader("a", "/dev/ttyS0", 1) }]),
            Err(OsdpError::Baud { .. })
        ));
        assert!(matches!(
            check(&[reader("a", "/dev/ttyS0", 1), ReaderConfig { baud: 19200, ..reader("b", "/dev/ttyS0", 2) }]),
            Err(OsdpError::PortBaud { .. })
        ));
        assert!(matches!(
            check(&[ReaderConfig { install_mode: true, ..reader("a", "/dev/ttyS0", 1) }]),
            Err(OsdpError::InstallWithoutKey { .. })
        ));
    }

    #[test]
    fn answers_light_and_sound_the_reader() {
        let allowed = commands_for(Answer::Allowed { release: Some(Release { output: 1, seconds: 5 }) });
        let [OsdpCommand::Led(led), OsdpCommand::Buzzer(buzzer), OsdpCommand::Output(out)] = allowed.as_slice() else {
            panic!("{allowed:?}")
        };
        assert_eq!(led.temporary.on_color, OsdpLedColor::Green);
        assert_eq!(buzzer.rep_count, 1);
        assert_eq!((out.output_no, out.control_code, out.timer_count), (1, 5, 50));
        let denied = commands_for(Answer::Denied);
        let [OsdpCommand::Led(led), OsdpCommand::Buzzer(buzzer)] = denied.as_slice() else { panic!("{denied:?}") };
        assert_eq!(led.temporary.on_color, OsdpLedColor::Red);
        assert_eq!(buzzer.rep_count, 2);
    }
}
