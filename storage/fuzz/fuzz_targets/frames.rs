//! Arbitrary bytes as a log segment: the segment header, every frame, and every payload as
//! a journal record and as a table frame. Nothing may panic or allocate beyond the input.
#![no_main]

use driftdb_storage::format::{
    key_events, key_events_at, read_frame, Decoder, FrameRead, JournalRecord, SegmentHeader,
    TableFrame, SEGMENT_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SegmentHeader::decode(data);
    let _ = JournalRecord::decode(data);
    let _ = TableFrame::decode(data);
    let _ = key_events(data, b"k");
    // Positions a key history might give, taken from the input itself.
    let at: Vec<u32> = data.iter().take(4).map(|b| u32::from(*b)).collect();
    let _ = key_events_at(data, b"k", &at);
    let _ = Decoder::new(data).op();
    let _ = Decoder::new(data).columns();
    let mut pos = if data.len() >= SEGMENT_HEADER_LEN {
        SEGMENT_HEADER_LEN
    } else {
        0
    };
    while let FrameRead::Frame { payload, next } = read_frame(data, pos) {
        assert!(next > pos && next <= data.len());
        let _ = JournalRecord::decode(payload);
        let _ = key_events(payload, &[]);
        if let Ok(f) = TableFrame::decode(payload) {
            assert!(!f.events.is_empty());
        }
        pos = next;
    }
});
