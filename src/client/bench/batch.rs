//! What one connection of `echo-client bench` sends per round trip, and how
//! an echo is judged against it.
//!
//! Every echo is checked against exactly the bytes that were sent, so each
//! message starts with a stamp: its sequence number, and from 16 bytes on,
//! the number again, inverted. A stale or shifted echo cannot pass, and a
//! UDP answer whose number was damaged cannot pass for a late answer to
//! another message. The rest of every message is one random block shared by
//! all connections: with hundreds of connections, blocks of their own would
//! not stay in the CPU's cache (with 4 KiB messages, such copies cost a C
//! load generator 12% of its speed).
//!
//! A write goes out from the sending thread's [`Outbox`], where the block
//! already stands repeated, message after message: only the stamps are
//! written in before each write. Copying the whole message in first cost a
//! 4 KiB round trip a fifth of the client's own instructions, and a
//! vectored write (stamp and block apart) cost more in the kernel than that
//! copy.

use std::collections::VecDeque;
use std::sync::Arc;

/// Late UDP answers a socket still accepts as stale rather than wrong, and
/// answered messages whose second copy it still knows for a duplicate.
const MAX_REMEMBERED: usize = 4096;
/// The longest stamp: the sequence number and its inverse.
const STAMP_LEN: usize = 16;

/// The message body every connection sends, after its stamps.
pub(crate) fn shared_block(size: usize) -> Arc<[u8]> {
    let mut rng = fastrand::Rng::with_seed(0x0ec4_0b10c);
    std::iter::repeat_with(|| rng.u8(..)).take(size).collect()
}

/// A message's stamp: its sequence number, then the number inverted.
fn stamp_of(sequence: u64) -> [u8; STAMP_LEN] {
    let mut stamp = [0u8; STAMP_LEN];
    stamp[..8].copy_from_slice(&sequence.to_le_bytes());
    stamp[8..].copy_from_slice(&(!sequence).to_le_bytes());
    stamp
}

/// A load thread's outgoing bytes, written at most `window` at a time.
/// Messages no larger than a window stand repeated, long enough that any
/// stretch of a batch, several messages at once, stands at the same place
/// in every batch, whatever its stamps. Of a larger message only the first
/// window is here, for its stamp: the rest goes out from the block itself,
/// so the outbox stays small whatever the message size.
pub(crate) struct Outbox {
    bytes: Box<[u8]>,
    window: usize,
}

impl Outbox {
    pub(crate) fn new(block: &[u8], window: usize) -> Outbox {
        assert!(window >= STAMP_LEN, "a stamp fits in one write");
        let len = if block.len() <= window {
            // A stretch starts within its first message: at most one
            // message before its window.
            block.len() - 1 + window
        } else {
            window
        };
        let bytes = block.iter().copied().cycle().take(len).collect();
        Outbox { bytes, window }
    }
}

/// What a UDP answer turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The first answer to this batch's message with this sequence number.
    Expected(u64),
    /// The first answer to an earlier message that was given up on.
    Late(u64),
    /// Another copy of an answer already taken: the path duplicated a
    /// datagram, the server did not echo wrong.
    Duplicate,
    Wrong,
}

/// `pipeline` messages back to back: a stamp each, then the shared block.
pub(crate) struct Batch {
    block: Arc<[u8]>,
    stamps: Vec<[u8; STAMP_LEN]>,
    /// Bytes of each stamp that fit in a message.
    stamp_len: usize,
    next_sequence: u64,
    /// This batch's messages not answered yet (UDP).
    unanswered: Vec<u64>,
    /// Earlier messages that were never answered: their answers may still
    /// arrive, late (UDP).
    lost: VecDeque<u64>,
    /// The latest messages answered, for telling their copies (UDP).
    answered: VecDeque<u64>,
}

impl Batch {
    /// A batch of `pipeline` messages of the block's size; `connection`
    /// keeps every connection's sequence numbers apart.
    pub(crate) fn new(block: Arc<[u8]>, pipeline: usize, connection: u64) -> Batch {
        Batch {
            stamp_len: block.len().min(STAMP_LEN),
            block,
            stamps: vec![[0; STAMP_LEN]; pipeline],
            next_sequence: connection << 40,
            unanswered: Vec::with_capacity(pipeline),
            lost: VecDeque::new(),
            answered: VecDeque::new(),
        }
    }

    /// Bytes per message.
    pub(crate) fn size(&self) -> usize {
        self.block.len()
    }

    pub(crate) fn messages(&self) -> usize {
        self.stamps.len()
    }

    /// Bytes in the whole batch.
    pub(crate) fn len(&self) -> usize {
        self.size() * self.messages()
    }

    /// Gives the batch's messages new sequence numbers, for its next trip.
    pub(crate) fn stamp(&mut self) {
        self.unanswered.clear();
        for stamp in &mut self.stamps {
            *stamp = stamp_of(self.next_sequence);
            self.unanswered.push(self.next_sequence);
            self.next_sequence += 1;
        }
    }

    /// The batch's bytes from `offset` on, as many as one write takes,
    /// ready to be written.
    pub(crate) fn outgoing<'a>(&'a self, offset: usize, outbox: &'a mut Outbox) -> &'a [u8] {
        self.stretch(offset, self.len() - offset, outbox)
    }

    /// Message `index` of the batch, whole, ready to be sent as one
    /// datagram; a datagram is never larger than the outbox's window.
    pub(crate) fn message<'a>(&'a self, index: usize, outbox: &'a mut Outbox) -> &'a [u8] {
        let size = self.size();
        let message = self.stretch(index * size, size, outbox);
        assert_eq!(message.len(), size, "a datagram fits in one write");
        message
    }

    /// At most `wanted` of the batch's bytes from `offset` on, and no more
    /// than one write takes.
    fn stretch<'a>(&'a self, offset: usize, wanted: usize, outbox: &'a mut Outbox) -> &'a [u8] {
        let size = self.size();
        let within = offset % size;
        let wanted = wanted.min(outbox.window);
        let end = if size <= outbox.window {
            offset + wanted
        } else if within >= outbox.window {
            // Past a large message's stamp: straight from the block.
            return &self.block[within..size.min(within + wanted)];
        } else {
            // A large message's first window, stamp and all.
            (offset - within + outbox.window).min(offset + wanted)
        };
        let out = &mut outbox.bytes[within..within + end - offset];
        // Each stamp, where it falls between `offset` and `end`.
        for (message, stamp) in self.stamps.iter().enumerate().skip(offset / size) {
            let at = message * size;
            if at >= end {
                break;
            }
            let (from, to) = (at.max(offset), (at + self.stamp_len).min(end));
            if from < to {
                out[from - offset..to - offset].copy_from_slice(&stamp[from - at..to - at]);
            }
        }
        out
    }

    /// Whether `echo` is exactly the batch's bytes from `offset` on.
    pub(crate) fn matches(&self, offset: usize, echo: &[u8]) -> bool {
        if echo.len() > self.len() - offset {
            return false;
        }
        let size = self.size();
        let (mut message, mut within) = (offset / size, offset % size);
        let mut rest = echo;
        while !rest.is_empty() {
            let expected = if within < self.stamp_len {
                &self.stamps[message][within..self.stamp_len]
            } else {
                &self.block[within..]
            };
            let (compared, after) = rest.split_at(expected.len().min(rest.len()));
            if compared != &expected[..compared.len()] {
                return false;
            }
            rest = after;
            within += compared.len();
            if within == size {
                (message, within) = (message + 1, 0);
            }
        }
        true
    }

    /// Judges a UDP answer: one of this batch's messages, exactly; or a late
    /// answer to a message that was given up on; or wrong.
    pub(crate) fn answer(&mut self, echo: &[u8]) -> Answer {
        if echo.len() != self.size() || self.stamp_len < 8 {
            return Answer::Wrong;
        }
        let sequence = u64::from_le_bytes(echo[..8].try_into().expect("eight bytes"));
        // The stamp must be whole, and the shared block must follow it.
        let stamp_intact = echo[..self.stamp_len] == stamp_of(sequence)[..self.stamp_len];
        if !stamp_intact || echo[self.stamp_len..] != self.block[self.stamp_len..] {
            return Answer::Wrong;
        }
        if let Some(position) = self.unanswered.iter().position(|&s| s == sequence) {
            self.unanswered.swap_remove(position);
            self.remember_answered(sequence);
            return Answer::Expected(sequence);
        }
        if let Some(position) = self.lost.iter().position(|&s| s == sequence) {
            self.lost.remove(position);
            self.remember_answered(sequence);
            return Answer::Late(sequence);
        }
        if self.answered.contains(&sequence) {
            return Answer::Duplicate;
        }
        Answer::Wrong
    }

    fn remember_answered(&mut self, sequence: u64) {
        if self.answered.len() == MAX_REMEMBERED {
            self.answered.pop_front();
        }
        self.answered.push_back(sequence);
    }

    /// How many of this batch's messages have no answer yet.
    pub(crate) fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// After a failure: this batch's unanswered messages may still be
    /// answered later, and that is not an error.
    pub(crate) fn forget_unanswered(&mut self) {
        self.lost.extend(self.unanswered.drain(..));
        while self.lost.len() > MAX_REMEMBERED {
            self.lost.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(batch: &Batch, index: usize) -> Vec<u8> {
        let mut outbox = Outbox::new(&batch.block, batch.size().max(STAMP_LEN));
        batch.message(index, &mut outbox).to_vec()
    }

    /// The rest of the batch from `offset`, as writes of at most `window`
    /// bytes would send it.
    fn written_from(batch: &Batch, offset: usize, window: usize) -> Vec<u8> {
        let mut outbox = Outbox::new(&batch.block, window);
        let mut out = Vec::new();
        while offset + out.len() < batch.len() {
            out.extend_from_slice(batch.outgoing(offset + out.len(), &mut outbox));
        }
        out
    }

    #[test]
    fn batches_carry_fresh_sequence_numbers() {
        let mut batch = Batch::new(shared_block(32), 3, 7);
        batch.stamp();
        let first: Vec<Vec<u8>> = (0..3).map(|i| message(&batch, i)).collect();
        assert_ne!(first[0], first[1]);
        assert_eq!(first[0][16..], first[1][16..], "same block after the stamp");
        assert_eq!(batch.answer(&first[2]), Answer::Expected((7 << 40) + 2));
        assert_eq!(batch.answer(&first[2]), Answer::Duplicate, "answered twice");
        batch.forget_unanswered();
        batch.stamp();
        assert_eq!(batch.answer(&first[0]), Answer::Late(7 << 40));
        assert_eq!(batch.answer(&first[0]), Answer::Duplicate, "late twice");
    }

    #[test]
    fn connections_do_not_share_sequence_numbers() {
        let mut one = Batch::new(shared_block(16), 1, 1);
        let mut two = Batch::new(shared_block(16), 1, 2);
        one.stamp();
        two.stamp();
        assert_ne!(message(&one, 0), message(&two, 0));
        assert_eq!(two.answer(&message(&one, 0)), Answer::Wrong);
    }

    #[test]
    fn corrupted_udp_answers_are_wrong_wherever_the_damage_is() {
        let mut batch = Batch::new(shared_block(16), 2, 1);
        batch.stamp();
        batch.forget_unanswered();
        batch.stamp();
        // The neighbour of a lost message's number is not a late answer.
        let mut next = message(&batch, 0);
        next[0] ^= 0x01;
        assert_eq!(batch.answer(&next), Answer::Wrong);
        let message = message(&batch, 1);
        for byte in [0, 7, 8, 15] {
            let mut corrupt = message.clone();
            corrupt[byte] ^= 0x10;
            assert_eq!(batch.answer(&corrupt), Answer::Wrong, "byte {byte}");
        }
        assert_eq!(batch.answer(&message[..15]), Answer::Wrong, "short");
    }

    #[test]
    fn a_write_from_any_offset_sends_the_rest_of_the_batch() {
        for size in [1, 5, 16, 17, 100] {
            let mut batch = Batch::new(shared_block(size), 3, 9);
            batch.stamp();
            let whole: Vec<u8> = (0..3).flat_map(|i| message(&batch, i)).collect();
            assert_eq!(whole.len(), batch.len());
            // Windows that hold several messages, and less than one.
            for window in [16, 21, (size + 3).max(16)] {
                for offset in 0..whole.len() {
                    let written = written_from(&batch, offset, window);
                    assert_eq!(written, whole[offset..], "size {size}, window {window}");
                }
            }
        }
    }

    #[test]
    fn connections_sharing_an_outbox_each_send_their_own_bytes() {
        let block = shared_block(40);
        let mut outbox = Outbox::new(&block, 50);
        let mut batches = [1, 2].map(|id| Batch::new(Arc::clone(&block), 3, id));
        for batch in &mut batches {
            batch.stamp();
        }
        let wholes = batches.each_ref().map(|batch| written_from(batch, 0, 64));
        // Interleaved writes from one outbox, at offsets in and out of step.
        for offset in [0, 7, 16, 39, 40, 41, 95, 119] {
            for (batch, whole) in batches.iter().zip(&wholes) {
                let written = batch.outgoing(offset, &mut outbox);
                assert_eq!(
                    written,
                    &whole[offset..(offset + 50).min(120)],
                    "offset {offset}"
                );
            }
        }
    }

    #[test]
    fn echoes_match_only_the_bytes_sent_at_their_offset() {
        let mut batch = Batch::new(shared_block(20), 2, 3);
        batch.stamp();
        let whole = written_from(&batch, 0, 64);
        for offset in 0..whole.len() {
            for end in offset + 1..=whole.len() {
                assert!(batch.matches(offset, &whole[offset..end]));
            }
            let mut corrupt = whole[offset..].to_vec();
            corrupt[0] ^= 0x80;
            assert!(!batch.matches(offset, &corrupt), "offset {offset}");
        }
        assert!(
            !batch.matches(1, &whole),
            "longer than the rest of the batch"
        );
        // The previous trip's echo is stale.
        let stale = whole.clone();
        batch.stamp();
        assert!(!batch.matches(0, &stale));
    }

    #[test]
    fn tiny_messages_still_differ() {
        let mut batch = Batch::new(shared_block(1), 2, 1);
        batch.stamp();
        assert_eq!(batch.len(), 2);
        assert_ne!(message(&batch, 0), message(&batch, 1));
    }
}
