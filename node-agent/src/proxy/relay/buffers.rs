//! Read buffers for the TCP → tunnel direction.
//!
//! What is read is frozen into `Bytes` and handed to h2 without a copy, so the buffer is busy
//! until h2 has written it to TLS. A small ring lets the next reads proceed meanwhile and takes a
//! buffer back once h2 is done with it: a bulk transfer allocates a few buffers once instead of
//! one per read (which, at these sizes, costs page faults as glibc trims and regrows its heap).
//! Buffers start small and double while reads fill them, so a chatty connection stays cheap.

use bytes::BytesMut;

const MIN_SIZE: usize = 16 << 10;
const MAX_SIZE: usize = 256 << 10;
/// Enough to keep reading while h2 holds a stream's full send buffer (1 MiB) plus one read.
const SLOTS: usize = 6;

#[derive(Debug)]
pub(super) struct ReadBuffers {
    slots: Vec<BytesMut>,
    current: usize,
    /// How much the next read asks for.
    size: usize,
}

impl ReadBuffers {
    pub(super) fn new() -> Self {
        Self {
            slots: Vec::new(),
            current: 0,
            size: MIN_SIZE,
        }
    }

    /// An empty buffer with room for the next read.
    pub(super) fn next(&mut self) -> &mut BytesMut {
        let wanted = self.size;
        // Keep filling the current buffer after a short read: one allocation, many reads.
        if self
            .slots
            .get(self.current)
            .is_some_and(|b| b.capacity() >= wanted / 2)
        {
            return &mut self.slots[self.current];
        }
        if let Some(free) = self.slots.iter_mut().position(|b| b.try_reclaim(wanted)) {
            self.current = free;
        } else if self.slots.len() < SLOTS {
            self.slots.push(BytesMut::with_capacity(wanted));
            self.current = self.slots.len() - 1;
        } else {
            // All still in flight: replace one; h2 frees the old memory when it is written.
            self.current = (self.current + 1) % SLOTS;
            self.slots[self.current] = BytesMut::with_capacity(wanted);
        }
        &mut self.slots[self.current]
    }

    /// Records how much the last read returned: reads that fill what was asked grow the ask.
    pub(super) fn filled(&mut self, n: usize) {
        if n >= self.size {
            self.size = (self.size * 2).min(MAX_SIZE);
        }
    }

    /// Gives all memory back (the connection went quiet).
    pub(super) fn release(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a full buffer into `Bytes` (what h2 then holds) and returns it.
    fn read_full(buffers: &mut ReadBuffers) -> bytes::Bytes {
        let buf = buffers.next();
        let n = buf.capacity();
        buf.resize(n, 7);
        let data = buf.split().freeze();
        buffers.filled(n);
        data
    }

    #[test]
    fn buffers_grow_while_reads_fill_them() {
        let mut buffers = ReadBuffers::new();
        let sizes: Vec<usize> = (0..6).map(|_| read_full(&mut buffers).len()).collect();
        assert_eq!(sizes[0], MIN_SIZE);
        assert!(
            sizes.windows(2).all(|w| w[1] >= w[0]),
            "sizes shrank: {sizes:?}"
        );
        assert!(
            *sizes.last().unwrap() >= MAX_SIZE,
            "never reached the maximum: {sizes:?}"
        );
    }

    #[test]
    fn a_buffer_is_reused_once_h2_has_dropped_its_bytes() {
        let mut buffers = ReadBuffers::new();
        buffers.size = MAX_SIZE;
        let first = read_full(&mut buffers);
        let second = read_full(&mut buffers);
        assert_ne!(
            first.as_ptr(),
            second.as_ptr(),
            "a buffer in flight was reused"
        );

        let first_ptr = first.as_ptr();
        drop(first);
        let third = read_full(&mut buffers);
        assert_eq!(third.as_ptr(), first_ptr, "a free buffer was not reused");
        assert_eq!(
            buffers.slots.len(),
            2,
            "allocated although a buffer was free"
        );
    }

    #[test]
    fn the_ring_is_bounded_when_everything_is_in_flight() {
        let mut buffers = ReadBuffers::new();
        let in_flight: Vec<_> = (0..3 * SLOTS).map(|_| read_full(&mut buffers)).collect();
        assert_eq!(buffers.slots.len(), SLOTS);
        assert_eq!(in_flight.len(), 3 * SLOTS);
    }
}
