//! Wake-ups without polling.
//!
//! - [`Notifier`]: the one seam through which a committed transition is
//!   announced and waited for. Whoever commits a transition announces it;
//!   waiters ([`wait_until_done`](crate::wait_until_done),
//!   [`follow`](crate::follow), a kill's wait) and the daemon's watcher
//!   [`subscribe`](Notifier::subscribe) to it. [`FileNotifier`] (a file per
//!   execution in the home's `notify/`, watched with inotify) serves one
//!   host; on a PostgreSQL ledger, [`ListeningNotifier`](crate::ListeningNotifier)
//!   adds LISTEN/NOTIFY behind the same trait, so that a subscription wakes
//!   for every host's transitions and the daemon hears kill requests for
//!   its agent ([`Notifier::subscribe_kills`]).
//! - A log's new output is a file of this host whatever the ledger, so it
//!   is not announced; but `follow` waits for output and transitions at
//!   once, so a subscription can include it
//!   ([`Notifier::subscribe_with_output`]): one descriptor for both.
//! - A cgroup's emptying ([`until_empty`], inotify on `cgroup.events`) is
//!   the supervisor's own business and stays out of the seam.
//!
//! None of them sleeps in a loop: a wait is one `poll(2)` with a deadline
//! ([`wait_any`]).

use std::fmt;
use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;
use tend_model::{ExecutionId, Status};

use crate::Error;

/// Announces committed transitions and hands out subscriptions to them.
///
/// It lives here, not in `tend-ledger`, because announcing and waiting are
/// what the supervisor, the waiters and the daemon do around the ledger,
/// next to the pidfds they poll, and the implementation used today is files
/// of the home (not of the ledger: `--store` may name a ledger elsewhere).
/// On a PostgreSQL ledger the ledger's triggers announce to other hosts
/// too (NOTIFY), and [`ListeningNotifier`](crate::ListeningNotifier) hears
/// them; callers see only this trait ([`Home::notifier`](crate::Home::notifier)).
///
/// An announcement is only a wake-up: it says "look at the ledger again",
/// and the ledger stays the truth. Losing one delays a waiter of another
/// host until its deadline, never makes it wrong; local waiters also watch
/// the supervisor's pidfd, and the daemon reconciles on a slow timer.
pub trait Notifier: fmt::Debug + Send + Sync {
    /// Says that `id` changed status (now `status`); called right after the
    /// transition is committed. Best effort: failure is not reported, for
    /// the reason above.
    fn announce(&self, id: &ExecutionId, status: Status);

    /// A subscription to every announcement from now on. Subscribe before
    /// reading the ledger, so that a transition committed in between still
    /// wakes the subscriber.
    fn subscribe(&self) -> Result<Box<dyn Subscription>, Error>;

    /// Like [`Notifier::subscribe`], and its descriptor also becomes
    /// readable when a file in `logs` (a home's `logs/`) appears, grows, is
    /// rotated or closed; [`Subscription::take`] still names only announced
    /// executions. One descriptor for both, because closing an inotify
    /// descriptor costs an RCU grace period (~10 ms) and `follow` waits for
    /// both until its execution ends. A notifier whose announcements arrive
    /// on another descriptor (a database connection) joins the two, in an
    /// epoll descriptor for instance.
    fn subscribe_with_output(&self, logs: &Path) -> Result<Box<dyn Subscription>, Error>;

    /// Says that the stored jobs changed (added, replaced, paused, resumed,
    /// removed), so that a scheduler sleeping until its next fire looks at
    /// them again. Best effort, as [`Notifier::announce`].
    fn announce_jobs(&self);

    /// A subscription to job changes only: its descriptor is readable after
    /// [`Notifier::announce_jobs`]; [`Subscription::take`] empties it (and
    /// names nothing: the jobs are re-read whole).
    fn subscribe_jobs(&self) -> Result<Box<dyn Subscription>, Error>;

    /// A subscription to kill requests recorded in the ledger by any host
    /// ([`Subscription::take`] names the executions), for the daemon that
    /// carries out its agent's: on a shared ledger the asker cannot reach
    /// another host's supervisor. Its descriptor also becomes readable,
    /// naming nothing, when the listener connected again and requests may
    /// have gone unheard: then look at all of them. `None` where requests
    /// never cross hosts (one host: the asker nudges the supervisor
    /// itself), as for [`FileNotifier`].
    fn subscribe_kills(&self) -> Result<Option<Box<dyn Subscription>>, Error> {
        Ok(None)
    }
}

/// Announcements since [`Notifier::subscribe`], queued until taken.
///
/// Its descriptor ([`AsFd`]) is readable while announcements are queued, so
/// a caller that also waits for other descriptors (a supervisor's pidfd, a
/// log folder, tokio's reactor) polls it together with them and then calls
/// [`Subscription::take`]; a caller with nothing else to wait for calls
/// [`Subscription::wait`].
pub trait Subscription: AsFd + Send {
    /// The executions announced since the last call, each once, without
    /// blocking; empty when nothing is queued. A queue that overflowed
    /// loses names, so the list is a hint: re-read what matters.
    fn take(&mut self) -> Vec<ExecutionId>;

    /// Whether a transition committed on another host wakes this
    /// subscription now (a healthy LISTEN connection). While it does not,
    /// a waiter of an execution only another host can end looks again on
    /// a short interval instead.
    fn hears_remote(&self) -> bool {
        false
    }

    /// Blocks until an announcement is queued or `deadline` passes (`None`:
    /// no deadline), and takes what is queued.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<Wake, Error> {
        let wake = wait_any(&[self.as_fd()], deadline)?;
        self.take();
        Ok(wake)
    }
}

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something is ready (or a signal interrupted the wait): look again.
    Ready,
    /// The deadline passed first.
    TimedOut,
}

/// The notifier of a home's `notify/` folder: after each transition the
/// committer writes `notify/<id>` (its new status) to a temporary name and
/// renames it into place, and subscribers watch the folder with inotify for
/// `IN_MOVED_TO` only, so each announcement wakes them once and a watcher
/// never sees half a file. Works for every process of this host that shares
/// the home, with no daemon (SQLite has no cross-process notification).
#[derive(Debug, Clone)]
pub struct FileNotifier {
    dir: PathBuf,
}

impl FileNotifier {
    /// The notifier of the folder `dir` (a home's `notify/`), which
    /// [`Home::ensure`](crate::Home::ensure) creates.
    pub fn new(dir: impl Into<PathBuf>) -> FileNotifier {
        FileNotifier { dir: dir.into() }
    }
}

impl Notifier for FileNotifier {
    fn announce(&self, id: &ExecutionId, status: Status) {
        let tmp = self.dir.join(format!(".{id}.tmp"));
        if fs::write(&tmp, status.as_str()).is_ok() {
            let _ = fs::rename(&tmp, self.dir.join(id.as_str()));
        }
    }

    fn subscribe(&self) -> Result<Box<dyn Subscription>, Error> {
        let fd = inotify_fd()?;
        inotify::add_watch(&fd, &self.dir, inotify::WatchFlags::MOVED_TO)
            .map_err(|e| Error::io("watching the notify folder")(e.into()))?;
        Ok(Box::new(FileSubscription { fd }))
    }

    fn subscribe_with_output(&self, logs: &Path) -> Result<Box<dyn Subscription>, Error> {
        use inotify::WatchFlags as W;
        let sub = self.subscribe()?;
        // Log names (`<id>.out`, `<id>.err.1`) are no execution ids, so
        // `take` skips them.
        inotify::add_watch(
            sub.as_fd(),
            logs,
            W::MOVED_TO | W::CLOSE_WRITE | W::CREATE | W::MODIFY,
        )
        .map_err(|e| Error::io("watching the logs folder")(e.into()))?;
        Ok(sub)
    }

    fn announce_jobs(&self) {
        // A folder of its own, so that execution subscribers never wake
        // for a job change, nor the scheduler for a transition.
        let dir = self.dir.join("jobs");
        let _ = fs::create_dir_all(&dir);
        let tmp = dir.join(".changed.tmp");
        if fs::write(&tmp, b"").is_ok() {
            let _ = fs::rename(&tmp, dir.join("changed"));
        }
    }

    fn subscribe_jobs(&self) -> Result<Box<dyn Subscription>, Error> {
        let dir = self.dir.join("jobs");
        fs::create_dir_all(&dir).map_err(Error::io("creating the jobs notify folder"))?;
        let fd = inotify_fd()?;
        inotify::add_watch(&fd, &dir, inotify::WatchFlags::MOVED_TO)
            .map_err(|e| Error::io("watching the jobs notify folder")(e.into()))?;
        Ok(Box::new(FileSubscription { fd }))
    }
}

/// An inotify descriptor on a notify folder.
struct FileSubscription {
    fd: OwnedFd,
}

impl AsFd for FileSubscription {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Subscription for FileSubscription {
    fn take(&mut self) -> Vec<ExecutionId> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut out: Vec<ExecutionId> = Vec::new();
        // Non-blocking: `next` fails with EAGAIN once the queue is empty.
        while let Ok(ev) = reader.next() {
            let Some(name) = ev.file_name().and_then(|n| n.to_str().ok()) else {
                continue;
            };
            if let Ok(id) = ExecutionId::parse(name) {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }
}

fn inotify_fd() -> Result<OwnedFd, Error> {
    inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .map_err(|e| Error::io("starting inotify")(e.into()))
}

/// Discards queued inotify events: they only say "look again".
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// One `poll(2)` until any of `fds` is readable (or has hung up: an exited
/// process's pidfd) or `deadline` passes. An interrupted poll counts as
/// ready: callers look again either way.
pub fn wait_any(fds: &[BorrowedFd<'_>], deadline: Option<Instant>) -> Result<Wake, Error> {
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        }
    });
    match poll(&mut polled, timeout.as_ref()) {
        Ok(0) => Ok(Wake::TimedOut),
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(Wake::Ready),
        Err(e) => Err(Error::io("waiting for a wake-up")(e.into())),
    }
}

/// Waits until a cgroup has no process, woken by inotify on its
/// `cgroup.events` (the kernel signals a modification when `populated`
/// changes). Gives up after `limit`; returns whether it emptied.
pub(crate) fn until_empty(cg: &tend_proc::cgroup::Cgroup, limit: Duration) -> Result<bool, Error> {
    let fd = inotify_fd()?;
    inotify::add_watch(
        &fd,
        cg.path().join("cgroup.events"),
        inotify::WatchFlags::MODIFY,
    )
    .map_err(|e| Error::io("watching a cgroup")(e.into()))?;
    let deadline = Instant::now() + limit;
    while cg.populated() {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        // A failed poll is a wake-up like any other: `populated` decides.
        let _ = wait_any(&[fd.as_fd()], Some(deadline));
        drain(&fd);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier() -> (tempfile::TempDir, FileNotifier) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let n = FileNotifier::new(dir.path());
        (dir, n)
    }

    #[test]
    fn an_announcement_wakes_a_subscriber_and_names_the_execution() {
        let (dir, n) = notifier();
        let mut sub = n.subscribe().expect("subscribed");
        let id = ExecutionId::parse("k3x9q2ab").expect("an id");
        let announcer = {
            let (n, id) = (n.clone(), id.clone());
            std::thread::spawn(move || n.announce(&id, Status::Running))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let woke = wait_any(&[sub.as_fd()], Some(deadline)).expect("waited");
        announcer.join().expect("the announcer ran");
        assert_eq!(woke, Wake::Ready);
        assert_eq!(sub.take(), vec![id.clone()], "one wake-up per announcement");
        assert!(sub.take().is_empty(), "taken once");
        let file = dir.path().join(id.as_str());
        assert_eq!(fs::read_to_string(file).expect("the file"), "running");
    }

    #[test]
    fn an_announcement_before_the_wait_is_not_missed() {
        let (_dir, n) = notifier();
        let mut sub = n.subscribe().expect("subscribed");
        n.announce(
            &ExecutionId::parse("k3x9q2ab").expect("an id"),
            Status::Succeeded,
        );
        let started = Instant::now();
        let wake = sub
            .wait(Some(started + Duration::from_secs(10)))
            .expect("waited");
        assert_eq!(wake, Wake::Ready);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(sub.take().is_empty(), "wait took what was queued");
    }

    #[test]
    fn output_wakes_a_subscription_with_output_but_names_no_execution() {
        let (dir, n) = notifier();
        let logs = tempfile::tempdir().expect("a logs folder");
        let mut sub = n.subscribe_with_output(logs.path()).expect("subscribed");
        fs::write(logs.path().join("k3x9q2ab.out"), "hello").expect("output");
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            wait_any(&[sub.as_fd()], Some(deadline)).expect("waited"),
            Wake::Ready
        );
        assert!(sub.take().is_empty(), "output is no announcement");
        let id = ExecutionId::parse("k3x9q2ab").expect("an id");
        n.announce(&id, Status::Failed);
        assert_eq!(sub.wait(Some(deadline)).expect("waited"), Wake::Ready);
        assert!(dir.path().join(id.as_str()).is_file());
    }

    #[test]
    fn a_wait_without_announcement_ends_at_its_deadline() {
        let (dir, n) = notifier();
        let mut sub = n.subscribe().expect("subscribed");
        // Files that are not announcements (no rename into place) do not
        // wake a subscriber.
        fs::write(dir.path().join("stray"), "x").expect("a stray file");
        let started = Instant::now();
        let limit = Duration::from_millis(100);
        let wake = sub.wait(Some(started + limit)).expect("waited");
        assert_eq!(wake, Wake::TimedOut);
        assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
    }
}
