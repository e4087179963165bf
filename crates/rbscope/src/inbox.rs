//! A queue between the thread that reads the agent's socket and the one that renders, bounded
//! by bytes rather than by messages.
//!
//! The agent drops trace events (and counts them) when its ring fills, which happens when this
//! CLI stops reading its socket. Rendering text or JSON is slower than the agent produces
//! events at full speed, so the reader must never wait for the renderer: it queues what it read,
//! up to `cap` bytes (hundreds of megabytes: tens of millions of events), and the renderer
//! catches up behind it. Only when the renderer truly stalls and the queue is full does the
//! reader wait, the socket fill and the agent count drops.

use std::collections::VecDeque;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    /// The sending side is gone: once `items` is empty, receivers see Disconnected.
    closed: bool,
    /// The receiving side is gone: the sender stops.
    dropped: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives or the sender goes.
    arrived: Condvar,
    /// Signalled when items leave or the receiver goes.
    left: Condvar,
    cap: usize,
}

/// The sending half: [`Sender::send`] waits only while the queue holds `cap` bytes or more.
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving half, with `std::sync::mpsc`'s receive calls.
pub struct Receiver<T>(Arc<Shared<T>>);

/// A queue holding up to about `cap` bytes (one item always fits, whatever its size).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            closed: false,
            dropped: false,
        }),
        arrived: Condvar::new(),
        left: Condvar::new(),
        cap,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `item`, which weighs `bytes`; waits while the queue is full. Err (with the item)
    /// when the receiver is gone.
    pub fn send(&self, item: T, bytes: usize) -> Result<(), T> {
        let s = &self.0;
        let Ok(mut st) = s.state.lock() else {
            return Err(item);
        };
        while st.bytes > 0 && st.bytes + bytes > s.cap && !st.dropped {
            st = match s.left.wait(st) {
                Ok(g) => g,
                Err(_) => return Err(item),
            };
        }
        if st.dropped {
            return Err(item);
        }
        st.items.push_back((item, bytes));
        st.bytes += bytes;
        s.arrived.notify_one();
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.state.lock() {
            st.closed = true;
        }
        self.0.arrived.notify_all();
    }
}

impl<T> Receiver<T> {
    fn take(&self, st: &mut State<T>) -> Option<T> {
        let (item, bytes) = st.items.pop_front()?;
        st.bytes -= bytes;
        self.0.left.notify_one();
        Some(item)
    }

    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut st = self
            .0
            .state
            .lock()
            .map_err(|_| TryRecvError::Disconnected)?;
        match self.take(&mut st) {
            Some(item) => Ok(item),
            None if st.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut st = self
            .0
            .state
            .lock()
            .map_err(|_| RecvTimeoutError::Disconnected)?;
        loop {
            if let Some(item) = self.take(&mut st) {
                return Ok(item);
            }
            if st.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            st = self
                .0
                .arrived
                .wait_timeout(st, deadline - now)
                .map_err(|_| RecvTimeoutError::Disconnected)?
                .0;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.state.lock() {
            st.dropped = true;
        }
        self.0.left.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn items_come_out_in_order_and_then_disconnected() {
        let (tx, rx) = bounded::<u32>(100);
        for i in 0..10 {
            tx.send(i, 5).unwrap();
        }
        assert_eq!(rx.try_recv(), Ok(0));
        drop(tx);
        let rest: Vec<u32> = (1..10).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(rest, (1..10).collect::<Vec<_>>());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn an_empty_queue_times_out_and_an_oversized_item_still_goes_in() {
        let (tx, rx) = bounded::<&str>(10);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        tx.send("big", 1_000).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok("big"));
    }

    #[test]
    fn the_sender_waits_while_full_and_goes_on_once_the_receiver_takes() {
        let (tx, rx) = bounded::<u32>(10);
        tx.send(1, 6).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            // 6 + 6 > 10: waits until the first item is taken.
            tx.send(2, 6).unwrap();
            done_tx.send(()).unwrap();
            tx
        });
        assert_eq!(
            done_rx.recv_timeout(Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "the second send waits while the queue is full"
        );
        assert_eq!(rx.try_recv(), Ok(1));
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(2));
        let tx = sender.join().unwrap();
        // A receiver gone: a waiting or later send fails instead of waiting for ever.
        tx.send(3, 6).unwrap();
        let blocked = std::thread::spawn(move || tx.send(4, 6));
        drop(rx);
        assert_eq!(blocked.join().unwrap(), Err(4));
    }
}
