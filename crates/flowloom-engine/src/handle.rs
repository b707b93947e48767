//! [`RunHandle`]: a run started with [`Engine::start`](crate::Engine::start).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use flowloom_core::{WorkflowResult, WorkflowStatus};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::engine::{Engine, RunOptions};
use crate::error::RunError;
use crate::exec::{self, status_from};
use crate::workflow::Workflow;

type Outcome = Result<WorkflowResult, RunError>;

struct Shared {
    status: Arc<AtomicU8>,
    /// Boxed: a run in flight keeps only a pointer's worth of room for its result.
    result: Mutex<Option<Box<Outcome>>>,
    /// Set once the result is stored; `notify` wakes whoever waits for it. (Smaller than a
    /// watch channel: this is kept for every run started with a handle.)
    done: AtomicBool,
    notify: Notify,
}

impl Shared {
    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// Stores a run's outcome in its handle; if the run's task is dropped first (its runtime shut
/// down), stores an error instead, so waiting on the handle never hangs.
struct Finish(Arc<Shared>);

impl Finish {
    fn store(&self, out: Outcome) {
        if out.as_ref().err().is_some_and(RunError::is_before_start) {
            self.0
                .status
                .store(exec::status_code(WorkflowStatus::Failed), Ordering::Release);
        }
        if let Ok(mut slot) = self.0.result.lock() {
            *slot = Some(Box::new(out));
        }
        self.0.done.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    fn finish(self, out: Outcome) {
        self.store(out);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.0.is_done() {
            self.store(Err(RunError::Runtime(
                "the run was dropped before it ended (its runtime shut down)".to_owned(),
            )));
        }
    }
}

/// A running (or finished) workflow run: its id, status, a way to cancel it, and its result,
/// kept until taken. Dropping the handle does not stop the run.
///
/// ```
/// # use flowloom_engine::prelude::*;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let engine = Engine::builder().build()?;
/// let wf = Workflow::builder("w").transform("t", |_| Ok("done".into())).build()?;
/// let handle = engine.start(&wf, "input");
/// let result = handle.result().await?;
/// assert_eq!(result.output_text(), Some("done"));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct RunHandle {
    id: Uuid,
    workflow: String,
    cancel: CancellationToken,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.id)
            .field("workflow", &self.workflow)
            .field("status", &self.status())
            .finish()
    }
}

impl RunHandle {
    pub(crate) fn spawn(
        engine: Engine,
        workflow: Workflow,
        mut options: RunOptions,
        rt: Result<tokio::runtime::Handle, RunError>,
    ) -> RunHandle {
        let id = options.run_id.unwrap_or_else(crate::exec::new_id);
        options.run_id = Some(id);
        let cancel = options.cancel.clone().unwrap_or_default();
        options.cancel = Some(cancel.clone());
        let status = Arc::new(AtomicU8::new(exec::status_code(WorkflowStatus::Pending)));
        options.status = Some(Arc::clone(&status));
        let shared = Arc::new(Shared {
            status,
            result: Mutex::new(None),
            done: AtomicBool::new(false),
            notify: Notify::new(),
        });
        let handle = RunHandle {
            id,
            workflow: workflow.name().to_owned(),
            cancel,
            shared: Arc::clone(&shared),
        };
        match rt {
            Ok(rt) => {
                rt.spawn(async move {
                    let guard = Finish(shared);
                    let out = exec::run_top(&engine, &workflow, options).await;
                    guard.finish(out);
                });
            }
            Err(e) => Finish(shared).finish(Err(e)),
        }
        handle
    }

    /// The run's id (the result's `workflow_id`).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The workflow's name.
    pub fn workflow_name(&self) -> &str {
        &self.workflow
    }

    /// Where the run is now: `PENDING` (waiting for a slot), `RUNNING`, or terminal. A run
    /// refused before it started reads `FAILED`.
    pub fn status(&self) -> WorkflowStatus {
        status_from(self.shared.status.load(Ordering::Acquire))
    }

    /// True once the run has ended and its result is stored.
    pub fn is_finished(&self) -> bool {
        self.shared.is_done()
    }

    /// Cancels the run gracefully: steps in flight finish (their model calls are counted),
    /// nothing new starts, plugins clean up, and the result is `CANCELLED` with its metrics.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits until the run has ended, without taking the result.
    pub async fn wait(&self) {
        loop {
            // Registered before the check, so a result stored in between still wakes it.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.is_done() {
                return;
            }
            notified.await;
        }
    }

    /// Takes the result if the run has ended; `None` while it runs (or once taken).
    pub fn try_result(&self) -> Option<Result<WorkflowResult, RunError>> {
        if !self.is_finished() {
            return None;
        }
        self.shared.result.lock().ok()?.take().map(|b| *b)
    }

    /// Waits for the run to end and takes its result: `Ok` when it completed, otherwise the
    /// error with the result (steps, outputs, metrics) inside.
    pub async fn result(self) -> Result<WorkflowResult, RunError> {
        self.wait().await;
        self.shared
            .result
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .map(|b| *b)
            .unwrap_or_else(|| Err(RunError::Runtime("the result was already taken".to_owned())))
    }
}
