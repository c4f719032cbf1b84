//! Evaluating an expression within bounds, whatever it is: the `cel` crate has no cost limit of
//! its own, so
//!
//! - the syntax tree is instrumented once, when the expression is compiled: the list of every
//!   comprehension (what `all`, `exists`, `map`, ... expand into) passes through a function of
//!   ours, which counts the elements about to be iterated and fails the evaluation once
//!   [`MAX_ITERATIONS`] are used up, once the [`DEADLINE`] has passed, or once the caller gave
//!   up — counted up front, so the work done is bounded by the count;
//! - the evaluation runs on a thread of its own, and the caller waits at most until the deadline
//!   (or until [`Cancel`] says a second Ctrl-C came): what no comprehension counts (comparing two
//!   huge values, say) cannot hold the run either. A thread given up on is told to stop at its
//!   next count and is left to finish alone;
//! - the result is converted to JSON with a bound on its number of values.
//!
//! The static estimate of [`super::bound`] refuses such expressions before they run; this is what
//! holds if the estimate was wrong.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cel::common::ast::{CallExpr, EntryExpr, Expr as Node, IdedExpr};
use cel::common::value::CowVal;
use cel::{ExecutionError, FunctionContext};
use serde_json::Value as Json;

/// The most elements the comprehensions of one evaluation may iterate over, all together.
pub const MAX_ITERATIONS: u64 = 1_000_000;
/// The longest one evaluation may take.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// The most values (list elements, map entries, scalars) a result may hold.
pub const MAX_RESULT_VALUES: usize = 100_000;
/// How often the caller looks at the clock and at [`Cancel`] while it waits.
const POLL: Duration = Duration::from_millis(20);
/// The function the instrumented tree calls; the parser never names a function so.
pub const CHARGE: &str = "@charge";

/// Why an evaluation gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// CEL's own error (no such key, division by zero, a bad overload, ...).
    #[error("{0}")]
    Failed(String),
    #[error(
        "stopped after {0} iterations of its macros (all, exists, map, ...): the expression does too much work"
    )]
    TooManyIterations(u64),
    #[error("stopped after {}: evaluating it takes too long", crate::units::duration(*.0))]
    TooLong(Duration),
    #[error("cancelled by a second Ctrl-C while it was evaluated")]
    Cancelled,
    #[error("its result holds more than {0} values")]
    TooLarge(usize),
    #[error("could not start evaluating it: {0}")]
    Thread(String),
}

/// Tells an evaluation under way to give up (the run's second Ctrl-C). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The bounds of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub iterations: u64,
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            iterations: MAX_ITERATIONS,
            deadline: DEADLINE,
        }
    }
}

const NONE: u8 = 0;
const ITERATIONS: u8 = 1;
const TIME: u8 = 2;
const STOPPED: u8 = 3;

/// What the instrumented tree counts against.
struct Budget {
    used: AtomicU64,
    limits: Limits,
    deadline: Instant,
    /// Set by the caller that gave up.
    stop: AtomicBool,
    /// Why the budget ran out (once it did, the evaluation's result does not count: `all` and
    /// `||` may absorb an error).
    reason: AtomicU8,
}

impl Budget {
    fn new(limits: Limits) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            limits,
            deadline: Instant::now() + limits.deadline,
            stop: AtomicBool::new(false),
            reason: AtomicU8::new(NONE),
        }
    }

    fn charge(&self, n: u64) -> Result<(), &'static str> {
        if self.stop.load(Ordering::SeqCst) {
            self.reason.store(STOPPED, Ordering::SeqCst);
            return Err("stopped");
        }
        let used = self.used.fetch_add(n, Ordering::SeqCst).saturating_add(n);
        if used > self.limits.iterations {
            self.reason.store(ITERATIONS, Ordering::SeqCst);
            return Err("too many iterations");
        }
        if Instant::now() > self.deadline {
            self.reason.store(TIME, Ordering::SeqCst);
            return Err("too long");
        }
        Ok(())
    }

    fn error(&self) -> Option<EvalError> {
        match self.reason.load(Ordering::SeqCst) {
            ITERATIONS => Some(EvalError::TooManyIterations(self.limits.iterations)),
            TIME => Some(EvalError::TooLong(self.limits.deadline)),
            STOPPED => Some(EvalError::Cancelled),
            _ => None,
        }
    }
}

/// `e` with the list of every comprehension passed through [`CHARGE`].
pub fn instrument(e: &IdedExpr) -> IdedExpr {
    let mut out = e.clone();
    let mut next = max_id(e).saturating_add(1);
    wrap(&mut out, &mut next);
    out
}

fn max_id(e: &IdedExpr) -> u64 {
    super::children(e)
        .into_iter()
        .map(max_id)
        .fold(e.id, u64::max)
}

fn wrap(e: &mut IdedExpr, next: &mut u64) {
    match &mut e.expr {
        Node::Call(c) => {
            if let Some(t) = &mut c.target {
                wrap(t, next);
            }
            c.args.iter_mut().for_each(|a| wrap(a, next));
        }
        Node::Comprehension(c) => {
            for x in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                wrap(x, next);
            }
            let range = std::mem::take(&mut c.iter_range);
            c.iter_range = IdedExpr {
                id: *next,
                expr: Node::Call(CallExpr {
                    func_name: CHARGE.into(),
                    target: None,
                    args: vec![range],
                }),
            };
            *next = next.saturating_add(1);
        }
        Node::List(l) => l.elements.iter_mut().for_each(|x| wrap(x, next)),
        Node::Map(m) => m.entries.iter_mut().for_each(|en| match &mut en.expr {
            EntryExpr::MapEntry(me) => {
                wrap(&mut me.key, next);
                wrap(&mut me.value, next);
            }
            EntryExpr::StructField(sf) => wrap(&mut sf.value, next),
        }),
        Node::Struct(s) => s.entries.iter_mut().for_each(|en| match &mut en.expr {
            EntryExpr::MapEntry(me) => {
                wrap(&mut me.key, next);
                wrap(&mut me.value, next);
            }
            EntryExpr::StructField(sf) => wrap(&mut sf.value, next),
        }),
        Node::Select(s) => wrap(&mut s.operand, next),
        Node::Ident(_) | Node::Literal(_) | Node::Unspecified => {}
    }
}

type Charge = Box<
    dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError>
        + Send
        + Sync,
>;

fn charge_function(budget: Arc<Budget>) -> Charge {
    Box::new(move |ftx| {
        let Some(range) = std::mem::take(&mut ftx.args).into_iter().next() else {
            return Err(ExecutionError::missing_argument_or_target());
        };
        let n = range
            .as_sizer()
            .map_or(0, |s| u64::try_from(*s.size().inner()).unwrap_or(0));
        budget
            .charge(n)
            .map_err(|why| ExecutionError::function_error(CHARGE, why))?;
        Ok(range)
    })
}

/// Evaluates the instrumented `tree` with `inputs` and `steps` bound, within `limits`; gives up
/// when `cancel` says so.
pub fn evaluate(
    tree: Arc<IdedExpr>,
    inputs: Json,
    steps: Json,
    cancel: Option<&Cancel>,
    limits: Limits,
) -> Result<Json, EvalError> {
    let budget = Arc::new(Budget::new(limits));
    let (tx, rx) = mpsc::channel();
    let theirs = budget.clone();
    std::thread::Builder::new()
        .name("newapi-ops-cel-eval".into())
        .stack_size(super::COMPILE_STACK)
        .spawn(move || {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut ctx = cel::Context::default();
                ctx.add_variable_from_value("inputs", super::to_cel(&inputs));
                ctx.add_variable_from_value("steps", super::to_cel(&steps));
                if let Err(e) = ctx.add_function(CHARGE, charge_function(theirs.clone())) {
                    return Err(EvalError::Failed(e.to_string()));
                }
                let value = cel::Value::resolve(&tree, &ctx);
                if let Some(e) = theirs.error() {
                    return Err(e);
                }
                match value {
                    Ok(v) => super::from_cel_bounded(&v, MAX_RESULT_VALUES),
                    Err(e) => Err(EvalError::Failed(e.to_string())),
                }
            }));
            let result = run.unwrap_or_else(|_| {
                Err(EvalError::Failed(
                    "the expression could not be evaluated".into(),
                ))
            });
            let _ = tx.send(result);
        })
        .map_err(|e| EvalError::Thread(e.to_string()))?;
    let give_up_at = Instant::now() + limits.deadline + POLL * 5;
    loop {
        match rx.recv_timeout(POLL) {
            Ok(r) => return r,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(EvalError::Failed(
                    "the expression could not be evaluated".into(),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if cancel.is_some_and(Cancel::is_cancelled) {
                    budget.stop.store(true, Ordering::SeqCst);
                    return Err(EvalError::Cancelled);
                }
                if Instant::now() > give_up_at {
                    budget.stop.store(true, Ordering::SeqCst);
                    return Err(EvalError::TooLong(limits.deadline));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(src: &str) -> Arc<IdedExpr> {
        let p = super::super::on_big_stack(|| cel::Program::compile(src)).unwrap();
        Arc::new(instrument(p.expression()))
    }

    fn eval(src: &str, limits: Limits, cancel: Option<&Cancel>) -> Result<Json, EvalError> {
        evaluate(
            tree(src),
            Json::Object(Default::default()),
            Json::Object(Default::default()),
            cancel,
            limits,
        )
    }

    #[test]
    fn instrumented_expressions_give_the_same_values() {
        for (src, want) in [
            ("[1, 2, 3].all(x, x > 0)", Json::Bool(true)),
            ("[1, 2, 3].exists(x, x > 2)", Json::Bool(true)),
            ("[1, 2, 3].exists_one(x, x > 1)", Json::Bool(false)),
            ("[1, 2, 3].map(x, x * 2)", serde_json::json!([2, 4, 6])),
            ("[1, 2, 3].filter(x, x != 2)", serde_json::json!([1, 3])),
            ("{'a': 1}.all(k, k == 'a')", Json::Bool(true)),
            ("size([[1, 2], [3]].map(l, l.map(x, x + 1)))", Json::from(2)),
        ] {
            assert_eq!(eval(src, Limits::default(), None).unwrap(), want, "{src}");
        }
    }

    /// Limits that only the iteration count reaches (whatever the speed of the machine).
    fn counted(iterations: u64) -> Limits {
        Limits {
            iterations,
            deadline: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_hostile_expression_stops_at_the_iteration_budget() {
        // Validation would refuse it; evaluated anyway, it stops.
        let err = eval(&super::super::hostile(), counted(20_000), None).unwrap_err();
        assert_eq!(err, EvalError::TooManyIterations(20_000));
        // Or at the deadline, whichever comes first: either way it ends.
        let err = eval(&super::super::hostile(), Limits::default(), None).unwrap_err();
        assert!(
            matches!(err, EvalError::TooManyIterations(_) | EvalError::TooLong(_)),
            "{err:?}"
        );
        // An absorbed error does not hide it: `false || ...` and `all` over a false element.
        let l = "[1,2,3,4,5,6,7,8,9,10]";
        let src = format!(
            "{l}.all(a, a == 10 || {l}.all(b, {l}.all(c, {l}.all(d, {l}.all(e, {l}.all(f, {l}.all(g, true)))))))"
        );
        let err = eval(&src, counted(20_000), None).unwrap_err();
        assert_eq!(err, EvalError::TooManyIterations(20_000));
    }

    #[test]
    fn what_no_comprehension_counts_is_cut_by_the_deadline() {
        // Comparing a value built by sharing (30^5 leaves) walks it all; only the clock sees it.
        let l =
            "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]";
        let src = format!(
            "[{l}.map(x, {l})].all(m, [m.map(x, m)].all(n, [n.map(x, n)].all(o, [o.map(x, o)].all(p, p == p))))"
        );
        let limits = Limits {
            iterations: MAX_ITERATIONS,
            deadline: Duration::from_millis(300),
        };
        let err = eval(&src, limits, None).unwrap_err();
        assert_eq!(err, EvalError::TooLong(Duration::from_millis(300)));
    }

    #[test]
    fn a_cancelled_evaluation_returns_at_once() {
        let cancel = Cancel::new();
        cancel.cancel();
        let limits = Limits {
            iterations: u64::MAX,
            deadline: Duration::from_secs(3600),
        };
        let err = eval(&super::super::hostile(), limits, Some(&cancel)).unwrap_err();
        assert_eq!(err, EvalError::Cancelled);
    }

    #[test]
    fn huge_results_are_refused() {
        let l =
            "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]";
        let src = format!("{l}.map(a, {l}.map(b, {l}.map(c, {l})))");
        // Only the size may stop it here: no deadline a loaded machine could hit first.
        let err = eval(&src, counted(u64::MAX), None).unwrap_err();
        assert_eq!(err, EvalError::TooLarge(MAX_RESULT_VALUES));
    }
}
