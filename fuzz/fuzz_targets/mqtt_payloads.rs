//! Every payload lintel or a controller reads from the broker: none may panic, and what
//! parses must survive a round trip. The allow-list is fed both to the signature check
//! (which must refuse it: the fuzzer has no key) and, unsigned, to the offline decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lintel_core::offline::InstalledList;
use lintel_proto::controller::{
    Ack, AllowList, Command, DecisionMessage, ListAck, Status, Tap, Upload, UploadAck,
};

fuzz_target!(|data: &[u8]| {
    let _ = Status::parse(data);
    let _ = Tap::parse(data);
    let _ = Ack::parse(data);
    let _ = ListAck::parse(data);
    let _ = UploadAck::parse(data);
    let _ = DecisionMessage::parse(data);
    if let Ok(command) = Command::parse(data) {
        let again = serde_json::to_vec(&command).unwrap();
        assert_eq!(Command::parse(&again).unwrap(), command);
    }
    if let Ok(upload) = Upload::parse(data) {
        assert!(upload.decisions.len() <= lintel_proto::controller::MAX_UPLOAD_BATCH);
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    assert!(lintel_signed::verify_allow_list(&key, data, "ctl-1").is_err());
    if let Ok(list) = serde_json::from_slice::<AllowList>(data) {
        let installed = InstalledList::new(list);
        for door in installed.list.doors.keys().cloned().collect::<Vec<_>>() {
            let _ = installed.decide(&door, &[0x04, 0xA1], Some("7"), 1_796_130_000);
            let _ = installed.decide(&door, &[], None, i64::MAX);
        }
    }
});
