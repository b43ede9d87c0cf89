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
//! load generator 12% of its speed). Bytes are copied from the stamps and the
//! block into the sending thread's buffer as they go out: cheaper than a
//! vectored write, whose extra work in the kernel cost more than the copy.

use std::collections::VecDeque;
use std::sync::Arc;

/// Late UDP answers a socket still accepts as stale rather than wrong.
const MAX_LOST_REMEMBERED: usize = 4096;
/// The longest stamp: the sequence number and its inverse.
const STAMP_LEN: usize = 16;

/// The message body every connection sends, after its stamps.
pub fn shared_block(size: usize) -> Arc<[u8]> {
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

/// What a UDP answer turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Expected,
    Late,
    Wrong,
}

/// `pipeline` messages back to back: a stamp each, then the shared block.
pub struct Batch {
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
}

impl Batch {
    /// A batch of `pipeline` messages of the block's size; `connection`
    /// keeps every connection's sequence numbers apart.
    pub fn new(block: Arc<[u8]>, pipeline: usize, connection: u64) -> Batch {
        Batch {
            stamp_len: block.len().min(STAMP_LEN),
            block,
            stamps: vec![[0; STAMP_LEN]; pipeline],
            next_sequence: connection << 40,
            unanswered: Vec::with_capacity(pipeline),
            lost: VecDeque::new(),
        }
    }

    /// Bytes per message.
    pub fn size(&self) -> usize {
        self.block.len()
    }

    pub fn messages(&self) -> usize {
        self.stamps.len()
    }

    /// Bytes in the whole batch.
    pub fn len(&self) -> usize {
        self.size() * self.messages()
    }

    /// Gives the batch's messages new sequence numbers, for its next trip.
    pub fn stamp(&mut self) {
        self.unanswered.clear();
        for stamp in &mut self.stamps {
            *stamp = stamp_of(self.next_sequence);
            self.unanswered.push(self.next_sequence);
            self.next_sequence += 1;
        }
    }

    /// The batch's bytes from `offset` on, as the pieces they are made of.
    fn pieces_from(&self, offset: usize) -> impl Iterator<Item = &[u8]> {
        let size = self.size();
        let (first, within) = (offset / size, offset % size);
        (first..self.messages())
            .flat_map(move |message| {
                let from = if message == first { within } else { 0 };
                [
                    &self.stamps[message][from.min(self.stamp_len)..self.stamp_len],
                    &self.block[from.max(self.stamp_len)..],
                ]
            })
            .filter(|piece| !piece.is_empty())
    }

    /// Copies the batch's bytes from `offset` on into `out`, as many as
    /// fit; returns how many.
    pub fn copy_from(&self, offset: usize, out: &mut [u8]) -> usize {
        let mut copied = 0;
        for piece in self.pieces_from(offset) {
            let room = &mut out[copied..];
            let n = piece.len().min(room.len());
            room[..n].copy_from_slice(&piece[..n]);
            copied += n;
            if copied == out.len() {
                break;
            }
        }
        copied
    }

    /// Whether `echo` is exactly the batch's bytes from `offset` on.
    pub fn matches(&self, offset: usize, echo: &[u8]) -> bool {
        let mut rest = echo;
        for piece in self.pieces_from(offset) {
            if rest.is_empty() {
                break;
            }
            let (compared, after) = rest.split_at(piece.len().min(rest.len()));
            if compared != &piece[..compared.len()] {
                return false;
            }
            rest = after;
        }
        rest.is_empty()
    }

    /// Judges a UDP answer: one of this batch's messages, exactly; or a late
    /// answer to a message that was given up on; or wrong.
    pub fn answer(&mut self, echo: &[u8]) -> Answer {
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
            return Answer::Expected;
        }
        if let Some(position) = self.lost.iter().position(|&s| s == sequence) {
            self.lost.remove(position);
            return Answer::Late;
        }
        Answer::Wrong
    }

    /// After a failure: this batch's unanswered messages may still be
    /// answered later, and that is not an error.
    pub fn forget_unanswered(&mut self) {
        self.lost.extend(self.unanswered.drain(..));
        while self.lost.len() > MAX_LOST_REMEMBERED {
            self.lost.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(batch: &Batch, index: usize) -> Vec<u8> {
        let mut out = vec![0; batch.size()];
        assert_eq!(batch.copy_from(index * batch.size(), &mut out), out.len());
        out
    }

    /// The rest of the batch from `offset`, as writes would send it.
    fn written_from(batch: &Batch, offset: usize) -> Vec<u8> {
        let mut out = vec![0; batch.len() + 1];
        let copied = batch.copy_from(offset, &mut out);
        out.truncate(copied);
        out
    }

    #[test]
    fn batches_carry_fresh_sequence_numbers() {
        let mut batch = Batch::new(shared_block(32), 3, 7);
        batch.stamp();
        let first: Vec<Vec<u8>> = (0..3).map(|i| message(&batch, i)).collect();
        assert_ne!(first[0], first[1]);
        assert_eq!(first[0][16..], first[1][16..], "same block after the stamp");
        assert_eq!(batch.answer(&first[2]), Answer::Expected);
        assert_eq!(batch.answer(&first[2]), Answer::Wrong, "answered twice");
        batch.forget_unanswered();
        batch.stamp();
        assert_eq!(batch.answer(&first[0]), Answer::Late);
        assert_eq!(batch.answer(&first[0]), Answer::Wrong, "late twice");
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
            for offset in 0..whole.len() {
                assert_eq!(written_from(&batch, offset), whole[offset..], "size {size}");
            }
        }
    }

    #[test]
    fn echoes_match_only_the_bytes_sent_at_their_offset() {
        let mut batch = Batch::new(shared_block(20), 2, 3);
        batch.stamp();
        let whole = written_from(&batch, 0);
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
