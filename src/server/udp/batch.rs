//! Datagrams in and out by the batch: `recvmmsg` and `sendmmsg` on Linux,
//! one at a time elsewhere. Both block until a datagram or room comes, or a
//! stop interrupts them (see `udp::wake`).
//!
//! Why batches: a UDP echo makes two system calls per datagram, and with
//! many sources sending at once those calls are most of its cost. One
//! `recvmmsg` waits for a datagram and takes every other one waiting (up to
//! `SLOTS`), and one `sendmmsg` answers them all. With a single source a
//! batch is one datagram, and `recvmmsg` and `sendmmsg` cost more than
//! `recvfrom` and `sendto` for it (the copy of their message headers, and a
//! second, failed, read from the socket after the first): 7 to 10% more CPU
//! per datagram at one flow in `bench.sh udp`. So a socket whose datagrams
//! come one at a time (`ALONE_BEFORE_SINGLE` reads of one in a row) is read
//! with `recvfrom`, and tried with `recvmmsg` every `PROBE_EVERY` reads to
//! find out when they stop coming alone; a lone reply goes with `sendto`.
//! The calls are made with `syscall` itself, for the reason
//! `shared::socket_calls` gives: glibc's wrappers are cancellation points,
//! which cost something on every call in a threaded process.
//!
//! Memory: every slot can hold a datagram of the protocol's maximum, so a
//! batch reserves `SLOTS` × 64 KiB (2 MiB) of address space. The allocation
//! is usually fresh pages from the kernel, zeroed as they are first touched
//! (glibc maps a block this large of its own, unless large blocks were
//! freed before), so it takes only as much memory as the largest datagrams
//! received have filled: about 128 KiB for small ones, 2 MiB at most.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use crate::shared::protocol::MAX_DATAGRAM;

/// What one call to send moved.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Delivered {
    pub(crate) datagrams: u64,
    pub(crate) bytes: u64,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::Batch;
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::Batch;

#[cfg(target_os = "linux")]
mod linux {
    use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use std::ptr::{self, NonNull, addr_of_mut};

    use super::*;

    /// Datagrams read in one call, and so answered in one.
    const SLOTS: usize = 32;

    /// Reads in a row that brought one datagram each before the socket is
    /// read one datagram at a time.
    const ALONE_BEFORE_SINGLE: u32 = 4;

    /// While read one at a time, every this many reads is a batch's, which
    /// takes more if more wait.
    const PROBE_EVERY: u32 = 8;

    const NAME_SIZE: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

    /// What the kernel reads and writes through the message headers'
    /// pointers: the headers themselves, the buffers and the address slots.
    /// It lives in one allocation that the batch holds by a raw pointer, and
    /// every pointer into it is derived from that one pointer through raw
    /// places. No `Box` or `&mut` claims it (moving a box, or taking a fresh
    /// `&mut`, makes the pointers taken before invalid in Rust's aliasing
    /// model), and the only references into it are shared ones that end
    /// within a call, never while the kernel writes.
    #[repr(C)]
    struct Slots {
        received: [libc::mmsghdr; SLOTS],
        received_data: [libc::iovec; SLOTS],
        replies: [libc::mmsghdr; SLOTS],
        reply_data: [libc::iovec; SLOTS],
        names: [libc::sockaddr_storage; SLOTS],
        buffers: [[u8; MAX_DATAGRAM]; SLOTS],
    }

    /// The datagrams of one `recvmmsg`, and the replies to them still to be
    /// sent.
    pub(crate) struct Batch {
        slots: NonNull<Slots>,
        /// How many datagrams the last receive brought.
        count: usize,
        /// Replies `sent..queued` are still to be sent.
        queued: usize,
        sent: usize,
        /// Reads in a row that brought one datagram.
        alone: u32,
    }

    // SAFETY: the slots are the batch's alone, and go where it goes; nothing
    // in them is shared with another thread.
    unsafe impl Send for Batch {}

    impl Drop for Batch {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout, freed only here.
            unsafe { dealloc(self.slots.as_ptr().cast(), Layout::new::<Slots>()) }
        }
    }

    impl Batch {
        pub(crate) fn new() -> Batch {
            let layout = Layout::new::<Slots>();
            // SAFETY: the layout is not empty. All-zero is a valid value of
            // every field (plain C structs, null pointers, bytes).
            let Some(slots) = NonNull::new(unsafe { alloc_zeroed(layout) }.cast::<Slots>()) else {
                handle_alloc_error(layout)
            };
            let all = slots.as_ptr();
            for slot in 0..SLOTS {
                // SAFETY: `all` is a live allocation of Slots, and every
                // place below is in it; no reference to it is taken.
                unsafe {
                    (*all).received_data[slot] = libc::iovec {
                        iov_base: addr_of_mut!((*all).buffers[slot]).cast(),
                        iov_len: MAX_DATAGRAM,
                    };
                    let header = addr_of_mut!((*all).received[slot].msg_hdr);
                    (*header).msg_name = addr_of_mut!((*all).names[slot]).cast();
                    (*header).msg_namelen = NAME_SIZE;
                    (*header).msg_iov = addr_of_mut!((*all).received_data[slot]);
                    (*header).msg_iovlen = 1;
                    let reply = addr_of_mut!((*all).replies[slot].msg_hdr);
                    (*reply).msg_iov = addr_of_mut!((*all).reply_data[slot]);
                    (*reply).msg_iovlen = 1;
                }
            }
            Batch {
                slots,
                count: 0,
                queued: 0,
                sent: 0,
                alone: 0,
            }
        }

        /// Waits for a datagram (an error if interrupted, see `udp::wake`),
        /// and reads it and every other one waiting, up to `SLOTS`. The
        /// replies of the batch before must all be sent.
        pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            debug_assert!(!self.has_pending());
            let all = self.slots.as_ptr();
            for slot in 0..self.count {
                // SAFETY: a place in the live allocation; no reference taken.
                unsafe { (*all).received[slot].msg_hdr.msg_namelen = NAME_SIZE };
            }
            self.count = 0;
            self.queued = 0;
            self.sent = 0;
            let single =
                self.alone >= ALONE_BEFORE_SINGLE && !self.alone.is_multiple_of(PROBE_EVERY);
            let received = if single {
                self.receive_one(socket)?
            } else {
                // SAFETY: the headers point at SLOTS buffers of MAX_DATAGRAM
                // bytes and address slots of NAME_SIZE, all in the slots.
                let result = unsafe {
                    libc::syscall(
                        libc::SYS_recvmmsg,
                        socket.as_raw_fd(),
                        addr_of_mut!((*all).received).cast::<libc::mmsghdr>(),
                        SLOTS as libc::c_uint,
                        libc::MSG_WAITFORONE,
                        ptr::null_mut::<libc::timespec>(),
                    )
                };
                usize::try_from(result).map_err(|_| io::Error::last_os_error())?
            };
            self.alone = match received {
                // Counted round, PROBE_EVERY reads a turn (one of which is
                // a multiple of it: the probe), so that the probes go on
                // however long the datagrams keep coming alone.
                1 if self.alone >= ALONE_BEFORE_SINGLE + PROBE_EVERY - 1 => ALONE_BEFORE_SINGLE,
                1 => self.alone + 1,
                _ => 0,
            };
            self.count = received;
            Ok(received)
        }

        /// `receive` of one datagram, into the first slot, with `recvfrom`.
        fn receive_one(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            // SAFETY: the first slot's buffer holds MAX_DATAGRAM bytes and its
            // address slot NAME_SIZE, both in the slots; the kernel writes
            // the address's length back into the header, where `peer` reads it.
            let len = unsafe {
                let first = addr_of_mut!((*self.slots.as_ptr()).received[0].msg_hdr);
                let result = libc::syscall(
                    libc::SYS_recvfrom,
                    socket.as_raw_fd(),
                    (*(*first).msg_iov).iov_base,
                    MAX_DATAGRAM,
                    0,
                    (*first).msg_name,
                    addr_of_mut!((*first).msg_namelen),
                );
                usize::try_from(result).map_err(|_| io::Error::last_os_error())?
            };
            // SAFETY: a place in the live allocation; no reference taken.
            unsafe { (*self.slots.as_ptr()).received[0].msg_len = len as libc::c_uint };
            Ok(1)
        }

        /// The sender of datagram `slot` of the last receive.
        pub(crate) fn peer(&self, slot: usize) -> Option<SocketAddr> {
            let all = self.slots.as_ptr();
            // SAFETY: places in the live allocation; the reference to the
            // address slot ends before anything writes to it again.
            unsafe {
                socket_address(
                    &(*all).names[slot],
                    (*all).received[slot].msg_hdr.msg_namelen,
                )
            }
        }

        /// How many bytes datagram `slot` carried.
        pub(crate) fn len(&self, slot: usize) -> usize {
            // SAFETY: a place in the live allocation; no reference taken.
            unsafe { (*self.slots.as_ptr()).received[slot].msg_len as usize }
        }

        /// Answers datagram `slot` with its own bytes, at the next send.
        pub(crate) fn queue_reply(&mut self, slot: usize) {
            let all = self.slots.as_ptr();
            let reply = self.queued;
            // SAFETY: places in the live allocation; no reference taken. The
            // reply points at the datagram's own buffer and sender.
            unsafe {
                (*all).reply_data[reply] = libc::iovec {
                    iov_base: (*all).received_data[slot].iov_base,
                    iov_len: (*all).received[slot].msg_len as usize,
                };
                let header = addr_of_mut!((*all).replies[reply].msg_hdr);
                (*header).msg_name = (*all).received[slot].msg_hdr.msg_name;
                (*header).msg_namelen = (*all).received[slot].msg_hdr.msg_namelen;
            }
            self.queued += 1;
        }

        /// Whether replies wait to be sent.
        pub(crate) fn has_pending(&self) -> bool {
            self.sent < self.queued
        }

        /// Sends the waiting replies, as many as the socket takes in one
        /// call, waiting for room (an error if interrupted, see `udp::wake`).
        /// An error concerns the first of them.
        pub(crate) fn send_pending(&mut self, socket: &UdpSocket) -> io::Result<Delivered> {
            let all = self.slots.as_ptr();
            let waiting = self.queued - self.sent;
            // SAFETY: each waiting header points at a received datagram's
            // bytes and its sender's address, all in the slots.
            let result = unsafe {
                let first = addr_of_mut!((*all).replies[self.sent]);
                if waiting == 1 {
                    let data = (*first).msg_hdr.msg_iov;
                    let result = libc::syscall(
                        libc::SYS_sendto,
                        socket.as_raw_fd(),
                        (*data).iov_base,
                        (*data).iov_len,
                        libc::MSG_NOSIGNAL,
                        (*first).msg_hdr.msg_name,
                        (*first).msg_hdr.msg_namelen,
                    );
                    // The bytes sent, which may be none: one datagram.
                    if result < 0 { result } else { 1 }
                } else {
                    libc::syscall(
                        libc::SYS_sendmmsg,
                        socket.as_raw_fd(),
                        first,
                        waiting as libc::c_uint,
                        libc::MSG_NOSIGNAL,
                    )
                }
            };
            let sent = usize::try_from(result).map_err(|_| io::Error::last_os_error())?;
            let bytes = (self.sent..self.sent + sent)
                // SAFETY: a place in the live allocation; no reference taken.
                .map(|reply| unsafe { (*all).reply_data[reply].iov_len } as u64)
                .sum();
            self.sent += sent;
            Ok(Delivered {
                datagrams: sent as u64,
                bytes,
            })
        }

        /// Gives up the first waiting reply (its send failed), and says
        /// whom it was for.
        pub(crate) fn drop_first_pending(&mut self) -> Option<SocketAddr> {
            let all = self.slots.as_ptr();
            // SAFETY: places in the live allocation; msg_name points at an
            // address slot, a sockaddr_storage, and the reference to it ends
            // before anything writes to it again.
            let peer = unsafe {
                let header = &(*all).replies[self.sent].msg_hdr;
                socket_address(
                    &*header.msg_name.cast::<libc::sockaddr_storage>(),
                    header.msg_namelen,
                )
            };
            self.sent += 1;
            peer
        }
    }

    /// The address the kernel wrote into `name`, if it is an IP one.
    fn socket_address(
        name: &libc::sockaddr_storage,
        length: libc::socklen_t,
    ) -> Option<SocketAddr> {
        let length = length as usize;
        match libc::c_int::from(name.ss_family) {
            libc::AF_INET if length >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let v4 = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                    u16::from_be(v4.sin_port),
                )))
            }
            libc::AF_INET6 if length >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let v6 = unsafe { &*ptr::from_ref(name).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v6.sin6_addr.s6_addr),
                    u16::from_be(v6.sin6_port),
                    v6.sin6_flowinfo,
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// One datagram at a time, with the same interface.
#[cfg(not(target_os = "linux"))]
mod portable {
    use super::*;

    pub(crate) struct Batch {
        buffer: Box<[u8]>,
        peer: Option<SocketAddr>,
        len: usize,
        pending: bool,
    }

    impl Batch {
        pub(crate) fn new() -> Batch {
            Batch {
                buffer: vec![0; MAX_DATAGRAM].into_boxed_slice(),
                peer: None,
                len: 0,
                pending: false,
            }
        }

        pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            let (len, peer) = socket.recv_from(&mut self.buffer)?;
            (self.len, self.peer) = (len, Some(peer));
            Ok(1)
        }

        pub(crate) fn peer(&self, _slot: usize) -> Option<SocketAddr> {
            self.peer
        }

        pub(crate) fn len(&self, _slot: usize) -> usize {
            self.len
        }

        pub(crate) fn queue_reply(&mut self, _slot: usize) {
            self.pending = true;
        }

        pub(crate) fn has_pending(&self) -> bool {
            self.pending
        }

        pub(crate) fn send_pending(&mut self, socket: &UdpSocket) -> io::Result<Delivered> {
            let peer = self.peer.expect("a reply has a datagram to answer");
            let sent = socket.send_to(&self.buffer[..self.len], peer)?;
            self.pending = false;
            Ok(Delivered {
                datagrams: 1,
                bytes: sent as u64,
            })
        }

        pub(crate) fn drop_first_pending(&mut self) -> Option<SocketAddr> {
            self.pending = false;
            self.peer
        }
    }
}
