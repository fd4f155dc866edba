//! The end of the shutdown grace period, as the data path sees it: requests still routing
//! answer 503 `shutting_down` and open streams end with an error event when it fires. The
//! daemon (`app`) fires the process-wide [`Grace`]; each HTTP worker relays it to its own
//! [`GraceEnd`], which every request and stream on that worker waits on.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;
use tokio::sync::watch;

/// The process-wide signal: fires once, when the shutdown grace period ends.
#[derive(Clone)]
pub struct Grace(watch::Receiver<bool>);

impl Grace {
    pub fn new() -> (watch::Sender<bool>, Grace) {
        let (tx, rx) = watch::channel(false);
        (tx, Grace(rx))
    }

    /// This worker's copy, relayed from the process-wide signal by a task on this thread.
    /// Waiting on it costs no lock and no atomic (a slab slot for the waker), so every request
    /// and every stream chunk can wait on it: the watch channel itself would take a lock per
    /// wait, shared by every worker.
    pub fn for_this_worker(&self) -> GraceEnd {
        let local = GraceEnd(Rc::new(Local::default()));
        let relay = local.clone();
        let mut root = self.0.clone();
        actix_web::rt::spawn(async move {
            // A sender gone without firing: the grace never ends.
            if root.wait_for(|ended| *ended).await.is_ok() {
                relay.fire();
            }
        });
        local
    }
}

/// One worker's view of the end of the grace period.
#[derive(Clone)]
pub struct GraceEnd(Rc<Local>);

#[derive(Default)]
struct Local {
    ended: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl GraceEnd {
    /// A copy that never fires (tests, and code with no daemon around it).
    pub fn never() -> GraceEnd {
        GraceEnd(Rc::new(Local::default()))
    }

    /// Resolves when the grace period has ended (at once if it already has).
    pub fn ended(&self) -> Ended<'_> {
        Ended {
            local: &self.0,
            key: None,
        }
    }

    fn fire(&self) {
        self.0.ended.set(true);
        // Taken out first: a woken task may poll (and drop its future) re-entrantly.
        let waiters: Vec<Waker> = self.0.waiters.borrow_mut().drain().collect();
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// The future of [`GraceEnd::ended`]; leaves no waker behind when dropped.
pub struct Ended<'a> {
    local: &'a Local,
    key: Option<usize>,
}

impl Future for Ended<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.local.ended.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.local.waiters.borrow_mut();
        match self.key.and_then(|k| waiters.get_mut(k)) {
            Some(w) => w.clone_from(cx.waker()),
            None => {
                let key = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        // After `fire` the slab is empty and no one registers again (polls return at once),
        // so a stale key can never remove another future's waker.
        if let Some(k) = self.key {
            self.local.waiters.borrow_mut().try_remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn waiters_are_woken_once_and_dropped_waiters_leave_nothing() {
        let g = GraceEnd::never();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(g.ended());
        let mut b = Box::pin(g.ended());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(a.as_mut().poll(&mut cx).is_pending(), "re-polled: one slot");
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(g.0.waiters.borrow().len(), 2);
        drop(b);
        assert_eq!(g.0.waiters.borrow().len(), 1);
        g.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        // After the end, waiting is immediate and registers nothing.
        let mut c = Box::pin(g.ended());
        assert!(c.as_mut().poll(&mut cx).is_ready());
        drop(a);
        drop(c);
        assert_eq!(g.0.waiters.borrow().len(), 0);
    }
}
