//! Resource bounds for chat templates, which are programs from whoever made the model file.
//!
//! minijinja's fuel bounds how many instructions a template runs, and the renderer bounds
//! what it writes, but one instruction can do unbounded work: `(10**9 * [])|list` loops a
//! billion times, `ns.s = ns.s ~ ns.s` doubles a string, `'x'|indent(10**9)` allocates a
//! gigabyte, and `5 in range(100000)` inside two loops takes minutes. So the template is
//! rewritten before it is compiled: every operator, call, slice, filter and test passes its
//! result through a guard that checks a deadline and charges the value's size to the
//! render's budget, and the operators and filters that can build far more than they are
//! given (`*`, `~`, `indent`, `replace`, `format`, `join`, ...) check the size first.
//! Values are otherwise untouched: a template renders exactly as it would without this.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use minijinja::machinery::{self, ast, WhitespaceConfig};
use minijinja::value::{Kwargs, Object, Rest, ValueKind};
use minijinja::{context, Environment, Error, ErrorKind, Expression, State, Value};

use crate::clock::Stopwatch;

/// Most bytes of values one render may build, intermediate ones included: real templates
/// build a few times their conversation, and a million tokens of conversation are about
/// 4 MB.
const VALUE_BUDGET: usize = 128 << 20;
/// Longest a render may run, where there is a clock (wasm32-unknown-unknown has none:
/// there fuel and the budget bound it).
const TIME_LIMIT_MS: f64 = 2000.0;
/// What an item of a list counts against the budget.
const ITEM_BYTES: usize = std::mem::size_of::<Value>();

const GUARD: &str = "__synapse_guard";
const MUL: &str = "__synapse_mul";
const ADD: &str = "__synapse_add";
const CONCAT: &str = "__synapse_concat";

/// `source` with its operators, calls, slices, filters and tests guarded. Fails with
/// minijinja's own syntax error where `source` does not parse.
pub(super) fn instrument(source: &str, whitespace: WhitespaceConfig) -> Result<String, Error> {
    let ast = machinery::parse(source, "chat_template", Default::default(), whitespace)?;
    let mut edits = Edits::new(source, whitespace)?;
    edits.stmt(&ast);
    Ok(edits.apply())
}

/// Registers the guards and the size-checked filters and string methods.
pub(super) fn install(env: &mut Environment<'static>) {
    env.add_function(GUARD, guard);
    env.add_filter(GUARD, guard);
    env.add_function(MUL, mul);
    env.add_function(ADD, add);
    env.add_function(CONCAT, concat);
    for &(name, projected) in FILTERS {
        // A `**kwargs` splat passes even an empty map, which filters without keywords refuse.
        let with_keywords = builtin(format!("value|{name}(*args, **kwargs)"));
        let positional_only = builtin(format!("value|{name}(*args)"));
        env.add_filter(
            name,
            move |state: &State, value: Value, args: Rest<Value>, kwargs: Kwargs| {
                let args = Args::take(args, kwargs)?;
                budget(state).check(projected(&value, &args)?)?;
                let call = match args.keywords.len() {
                    Some(0) => &positional_only,
                    _ => &with_keywords,
                };
                call.eval(context! { value, args => args.positional, kwargs => args.keywords })
            },
        );
    }
    env.set_unknown_method_callback(|state, value, method, args| {
        if let Some((_, projected)) = METHODS.iter().find(|(name, _)| *name == method) {
            let (args, kwargs) = minijinja::value::from_args::<(Rest<Value>, Kwargs)>(args)?;
            let args = Args::take(args, kwargs)?;
            budget(state).check(projected(value, &args)?)?;
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
}

/// A text insertion (or an operator's replacement) at a byte offset of the source.
struct Edit {
    at: usize,
    /// Closings first, then replacements, then openings, so that wrappers nest.
    rank: u8,
    /// Among closings the inner (shorter) span first; among openings the outer.
    nesting: isize,
    text: String,
    /// Source bytes the edit replaces.
    replaces: usize,
}

struct Edits<'s> {
    source: &'s str,
    list: Vec<Edit>,
    /// The source's tokens: where each starts and ends, and how it nests.
    tokens: Vec<Token>,
    /// `depth_before[i]`: brackets opened minus closed before token `i`.
    depth_before: Vec<isize>,
    /// Where each expression starts (minijinja's spans give exact ends, but some
    /// start at the token before the expression or at a filter's name).
    starts: HashMap<*const ast::Expr<'s>, usize>,
}

struct Token {
    start: usize,
    end: usize,
    /// +1 opens a bracket, -1 closes one.
    nesting: isize,
    /// `-`, `+` or `not`, which may start an expression.
    prefix: bool,
}

impl<'s> Edits<'s> {
    fn new(source: &'s str, whitespace: WhitespaceConfig) -> Result<Self, Error> {
        let mut tokens = Vec::new();
        for token in machinery::tokenize(source, false, Default::default(), whitespace) {
            let (token, span) = token?;
            use machinery::Token as T;
            tokens.push(Token {
                start: span.start_offset as usize,
                end: span.end_offset as usize,
                nesting: match token {
                    T::ParenOpen | T::BracketOpen | T::BraceOpen => 1,
                    T::ParenClose | T::BracketClose | T::BraceClose => -1,
                    _ => 0,
                },
                prefix: matches!(token, T::Minus | T::Plus | T::Ident("not")),
            });
        }
        let mut depth_before = Vec::with_capacity(tokens.len() + 1);
        let mut depth = 0;
        for token in &tokens {
            depth_before.push(depth);
            depth += token.nesting;
        }
        depth_before.push(depth);
        Ok(Edits {
            source,
            list: Vec::new(),
            tokens,
            depth_before,
            starts: HashMap::new(),
        })
    }

    /// The index of the token that ends at `offset`.
    fn token_ending_at(&self, offset: u32) -> usize {
        let offset = offset as usize;
        self.tokens
            .partition_point(|t| t.end < offset)
            .min(self.tokens.len().saturating_sub(1))
    }

    /// The byte offset where `expr` starts: where its first operand starts, taken back
    /// over the brackets that open inside it (`(a + b) * c`, `[a, b]`) and, for a unary
    /// operator, over the operator.
    fn start(&mut self, expr: &ast::Expr<'s>) -> usize {
        let key = expr as *const ast::Expr<'s>;
        if let Some(&start) = self.starts.get(&key) {
            return start;
        }
        use ast::Expr;
        let first = match expr {
            Expr::Var(_) | Expr::Const(_) => None,
            Expr::Slice(s) => Some(&s.expr),
            Expr::UnaryOp(u) => Some(&u.expr),
            Expr::BinOp(b) => Some(&b.left),
            Expr::Compare(c) => Some(&c.expr),
            Expr::IfExpr(i) => Some(&i.true_expr),
            Expr::Filter(f) => f.expr.as_ref(),
            Expr::Test(t) => Some(&t.expr),
            Expr::GetAttr(g) => Some(&g.expr),
            Expr::GetItem(g) => Some(&g.expr),
            Expr::Call(c) => Some(&c.expr),
            Expr::List(l) => l.items.first(),
            Expr::Map(m) => m.keys.first(),
        };
        let end = self.token_ending_at(expr.span().end_offset);
        let mut index = match first {
            Some(first) => {
                let offset = self.start(first);
                self.tokens.partition_point(|t| t.start < offset).min(end)
            }
            None => end,
        };
        while index > 0 && self.depth_before[end + 1] < self.depth_before[index] {
            index -= 1;
        }
        if matches!(expr, Expr::UnaryOp(_)) && index > 0 && self.tokens[index - 1].prefix {
            index -= 1;
        }
        let start = self.tokens.get(index).map_or(0, |t| t.start);
        self.starts.insert(key, start);
        start
    }

    /// `function(` before the expression and `)` after it.
    fn wrap(&mut self, expr: &ast::Expr<'s>, function: &str) {
        let (start, end) = (self.start(expr), expr.span().end_offset as usize);
        let len = (end - start) as isize;
        self.list.push(Edit {
            at: start,
            rank: 2,
            nesting: -len,
            text: format!("{function}("),
            replaces: 0,
        });
        self.list.push(Edit {
            at: end,
            rank: 0,
            nesting: len,
            text: ")".into(),
            replaces: 0,
        });
    }

    /// `|__synapse_guard` after a filter or test (whose spans start at its name).
    fn suffix(&mut self, expr: &ast::Expr<'s>) {
        let (start, end) = (self.start(expr), expr.span().end_offset as usize);
        self.list.push(Edit {
            at: end,
            rank: 0,
            nesting: (end - start) as isize,
            text: format!("|{GUARD}"),
            replaces: 0,
        });
    }

    /// `a * b` becomes `function(a , b)`: the operator, the first character after the
    /// left operand that is not a space or a closing parenthesis, becomes a comma.
    fn call_operator(&mut self, expr: &ast::Expr<'s>, op: &ast::BinOp<'s>, function: &str) {
        let left_end = op.left.span().end_offset as usize;
        let Some(offset) = self.source[left_end..].find(|c: char| !c.is_whitespace() && c != ')')
        else {
            return;
        };
        self.wrap(expr, function);
        self.list.push(Edit {
            at: left_end + offset,
            rank: 1,
            nesting: 0,
            text: ",".into(),
            replaces: 1,
        });
    }

    fn apply(mut self) -> String {
        self.list.sort_by_key(|e| (e.at, e.rank, e.nesting));
        let mut out = String::with_capacity(self.source.len() + 24 * self.list.len());
        let mut copied = 0;
        for edit in &self.list {
            out.push_str(&self.source[copied..edit.at.max(copied)]);
            out.push_str(&edit.text);
            copied = copied.max(edit.at + edit.replaces);
        }
        out.push_str(&self.source[copied..]);
        out
    }

    fn stmts(&mut self, stmts: &[ast::Stmt<'s>]) {
        stmts.iter().for_each(|s| self.stmt(s));
    }

    fn stmt(&mut self, stmt: &ast::Stmt<'s>) {
        use ast::Stmt;
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter);
                self.opt_expr(&f.filter_expr);
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                w.assignments.iter().for_each(|(_, value)| self.expr(value));
                self.stmts(&w.body);
            }
            Stmt::Set(s) => self.expr(&s.expr),
            Stmt::SetBlock(s) => self.stmts(&s.body),
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.stmts(&a.body);
            }
            Stmt::FilterBlock(f) => self.stmts(&f.body),
            Stmt::Block(b) => self.stmts(&b.body),
            Stmt::Import(i) => self.expr(&i.expr),
            Stmt::FromImport(i) => self.expr(&i.expr),
            Stmt::Extends(e) => self.expr(&e.name),
            Stmt::Include(i) => self.expr(&i.name),
            Stmt::Macro(m) => self.macro_decl(m),
            Stmt::CallBlock(c) => {
                // `{% call m() %}` must stay a call: guard its arguments only.
                self.expr(&c.call.expr);
                self.args(&c.call.args);
                self.macro_decl(&c.macro_decl);
            }
            Stmt::Do(d) => {
                self.expr(&d.call.expr);
                self.args(&d.call.args);
            }
        }
    }

    fn macro_decl(&mut self, m: &ast::Macro<'s>) {
        m.defaults.iter().for_each(|d| self.expr(d));
        self.stmts(&m.body);
    }

    fn args(&mut self, args: &[ast::CallArg<'s>]) {
        for arg in args {
            match arg {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn opt_expr(&mut self, expr: &Option<ast::Expr<'s>>) {
        if let Some(e) = expr {
            self.expr(e);
        }
    }

    fn expr(&mut self, expr: &ast::Expr<'s>) {
        use ast::Expr;
        match expr {
            Expr::Var(_) | Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.wrap(expr, GUARD);
                self.expr(&s.expr);
                self.opt_expr(&s.start);
                self.opt_expr(&s.stop);
                self.opt_expr(&s.step);
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                match b.op {
                    ast::BinOpKind::Mul => self.call_operator(expr, b, MUL),
                    ast::BinOpKind::Add => self.call_operator(expr, b, ADD),
                    ast::BinOpKind::Concat => self.call_operator(expr, b, CONCAT),
                    _ => self.wrap(expr, GUARD),
                }
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.wrap(expr, GUARD);
                self.expr(&c.expr);
                c.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                self.opt_expr(&i.false_expr);
            }
            Expr::Filter(f) => {
                // A filter without an operand (`{% filter upper %}`) is not an expression.
                if let Some(operand) = &f.expr {
                    self.suffix(expr);
                    self.expr(operand);
                }
                self.args(&f.args);
            }
            Expr::Test(t) => {
                self.suffix(expr);
                self.expr(&t.expr);
                self.args(&t.args);
            }
            Expr::GetAttr(g) => self.expr(&g.expr),
            Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            Expr::Call(c) => {
                self.wrap(expr, GUARD);
                self.expr(&c.expr);
                self.args(&c.args);
            }
            Expr::List(l) => l.items.iter().for_each(|e| self.expr(e)),
            Expr::Map(m) => {
                m.keys.iter().for_each(|e| self.expr(e));
                m.values.iter().for_each(|e| self.expr(e));
            }
        }
    }
}

/// What one render has spent.
#[derive(Debug)]
struct Budget {
    clock: Stopwatch,
    spent: AtomicUsize,
}

impl Object for Budget {}

fn budget(state: &State) -> Arc<Budget> {
    state.get_or_set_temp_object("synapse_budget", || Budget {
        clock: Stopwatch::start(),
        spent: AtomicUsize::new(0),
    })
}

impl Budget {
    fn remaining(&self) -> usize {
        VALUE_BUDGET.saturating_sub(self.spent.load(Ordering::Relaxed))
    }

    /// Fails past the deadline, or if `bytes` more would overrun the budget.
    fn check(&self, bytes: usize) -> Result<(), Error> {
        if self.clock.elapsed_ms() > TIME_LIMIT_MS {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("the template ran longer than {} s", TIME_LIMIT_MS / 1000.0),
            ));
        }
        if bytes > self.remaining() {
            return Err(over_budget());
        }
        Ok(())
    }

    fn charge(&self, value: &Value) -> Result<(), Error> {
        let bytes = match value.kind() {
            ValueKind::String => value.as_str().map_or(0, str::len),
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
                value.len().unwrap_or(0).saturating_mul(ITEM_BYTES)
            }
            _ => 0,
        };
        self.check(bytes)?;
        self.spent.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
}

/// What the current render may still build.
pub(super) fn remaining(state: &State) -> usize {
    budget(state).remaining()
}

pub(super) fn over_budget() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "the template built more than {} MiB of values",
            VALUE_BUDGET >> 20
        ),
    )
}

fn guard(state: &State, value: Value) -> Result<Value, Error> {
    budget(state).charge(&value)?;
    Ok(value)
}

/// `a * b`, refused before it repeats a string or a list past the budget. (minijinja
/// repeats lists lazily: `10**9 * []` is cheap to make and takes a billion steps to read.)
fn mul(state: &State, a: Value, b: Value) -> Result<Value, Error> {
    let budget = budget(state);
    for (repeated, times) in [(&a, &b), (&b, &a)] {
        let unit = match repeated.kind() {
            ValueKind::String => repeated.as_str().map_or(0, str::len),
            ValueKind::Seq | ValueKind::Iterable => repeated
                .len()
                .unwrap_or(0)
                .max(1)
                .saturating_mul(ITEM_BYTES),
            _ => continue,
        };
        if let Some(times) = times.as_usize() {
            budget.check(unit.saturating_mul(times))?;
        }
    }
    static PRODUCT: OnceLock<Expression<'static, 'static>> = OnceLock::new();
    let product = PRODUCT
        .get_or_init(|| builtin("a * b"))
        .eval(context! { a, b })?;
    budget.charge(&product)?;
    Ok(product)
}

/// `a + b`, refused before it joins two strings or lists past the budget.
fn add(state: &State, a: Value, b: Value) -> Result<Value, Error> {
    let budget = budget(state);
    let sum = match (a.as_str(), b.as_str()) {
        // The common case, done here: minijinja joins two strings the same way.
        (Some(x), Some(y)) => {
            budget.check(x.len() + y.len())?;
            Value::from([x, y].concat())
        }
        _ => {
            let items = a.len().unwrap_or(0).saturating_add(b.len().unwrap_or(0));
            budget.check(items.saturating_mul(ITEM_BYTES))?;
            static SUM: OnceLock<Expression<'static, 'static>> = OnceLock::new();
            SUM.get_or_init(|| builtin("a + b"))
                .eval(context! { a, b })?
        }
    };
    budget.charge(&sum)?;
    Ok(sum)
}

/// `a ~ b`, written into a string that stops at the budget (a list's text can be far
/// larger than the list).
fn concat(state: &State, a: Value, b: Value) -> Result<Value, Error> {
    let budget = budget(state);
    let mut out = BoundedText::new(budget.remaining());
    write!(out, "{a}{b}").map_err(|_| over_budget())?;
    let text = Value::from(out.text);
    budget.charge(&text)?;
    Ok(text)
}

/// A filter's or method's positional and keyword arguments.
struct Args {
    positional: Vec<Value>,
    keywords: Value,
}

impl Args {
    fn take(positional: Rest<Value>, kwargs: Kwargs) -> Result<Args, Error> {
        let mut keywords = std::collections::BTreeMap::new();
        for name in kwargs.args() {
            keywords.insert(name.to_owned(), kwargs.get::<Value>(name)?);
        }
        Ok(Args {
            positional: positional.0,
            keywords: Value::from(keywords),
        })
    }

    /// The argument at `index`, or else the keyword `name`.
    fn get(&self, index: usize, name: &str) -> Option<Value> {
        self.positional.get(index).cloned().or_else(|| {
            self.keywords
                .get_attr(name)
                .ok()
                .filter(|v| !v.is_undefined())
        })
    }
}

/// How many bytes a filter or method would build from its operand and arguments, at most.
type Projection = fn(&Value, &Args) -> Result<usize, Error>;

/// The built-in filters that can build far more than they are given.
const FILTERS: &[(&str, Projection)] = &[
    ("indent", |value, args| {
        // A width is a number of spaces or the indentation's text.
        let width = match args.get(0, "width") {
            None => 4,
            Some(w) => match w.as_usize() {
                Some(spaces) => spaces,
                None => text_len(&w)?,
            },
        };
        let lines = value.as_str().map_or(1, |s| s.matches('\n').count() + 1);
        Ok(text_len(value)?.saturating_add(lines.saturating_mul(width)))
    }),
    ("replace", |value, args| {
        replaced_len(value, args.get(0, "from"), args.get(1, "to"))
    }),
    ("format", |value, args| {
        formatted_len(value, &args.positional)
    }),
    ("join", |value, args| joined_len(value, args.get(0, "d"))),
    ("string", |value, _| text_len(value)),
    ("pprint", |value, _| {
        let mut meter = TextMeter(0);
        write!(meter, "{value:#?}").map_err(|_| over_budget())?;
        Ok(meter.0)
    }),
    ("list", |value, _| {
        Ok(value.len().unwrap_or(0).saturating_mul(ITEM_BYTES))
    }),
    ("batch", |value, args| padded_len(value, args)),
    ("slice", |value, args| padded_len(value, args)),
];

/// Python string methods (minijinja-contrib's) that can build far more than they are given.
const METHODS: &[(&str, Projection)] = &[
    ("replace", |value, args| {
        replaced_len(
            value,
            args.positional.first().cloned(),
            args.positional.get(1).cloned(),
        )
    }),
    ("format", |value, args| {
        formatted_len(value, &args.positional)
    }),
    ("join", |value, args| {
        joined_len(
            &args.positional.first().cloned().unwrap_or_default(),
            Some(value.clone()),
        )
    }),
];

fn replaced_len(value: &Value, from: Option<Value>, to: Option<Value>) -> Result<usize, Error> {
    let (Some(text), Some(from), Some(to)) = (value.as_str(), from, to) else {
        return text_len(value);
    };
    let from = from.to_string();
    let occurrences = if from.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(from.as_str()).count()
    };
    Ok(text
        .len()
        .saturating_add(occurrences.saturating_mul(text_len(&to)?)))
}

/// A `%`- or `{}`-style format: its text, every number in it taken as a width, and its
/// arguments' text.
fn formatted_len(format: &Value, args: &[Value]) -> Result<usize, Error> {
    let spec = format.as_str().unwrap_or_default();
    let widths = spec
        .split(|c: char| !c.is_ascii_digit())
        .map(|digits| {
            digits
                .parse::<usize>()
                .unwrap_or(if digits.is_empty() { 0 } else { usize::MAX })
        })
        .fold(0usize, usize::saturating_add);
    args.iter()
        .try_fold(spec.len().saturating_add(widths), |sum, arg| {
            Ok(sum.saturating_add(text_len(arg)?))
        })
}

fn joined_len(items: &Value, separator: Option<Value>) -> Result<usize, Error> {
    let separator = separator.map_or(Ok(0), |s| text_len(&s))?;
    let count = items.len().unwrap_or(0);
    Ok(text_len(items)?.saturating_add(count.saturating_mul(separator)))
}

/// `batch(count, fill)` and `slice(count, fill)`: up to `count` more items.
fn padded_len(value: &Value, args: &Args) -> Result<usize, Error> {
    let count = args.get(0, "count").and_then(|c| c.as_usize()).unwrap_or(0);
    Ok(value
        .len()
        .unwrap_or(0)
        .saturating_add(count)
        .saturating_mul(ITEM_BYTES))
}

/// The length of `value`'s text, or an error once it passes the budget.
fn text_len(value: &Value) -> Result<usize, Error> {
    if let Some(s) = value.as_str() {
        return Ok(s.len());
    }
    let mut meter = TextMeter(0);
    write!(meter, "{value}").map_err(|_| over_budget())?;
    Ok(meter.0)
}

/// Counts text without keeping it, up to the budget.
struct TextMeter(usize);

impl std::fmt::Write for TextMeter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        if self.0 > VALUE_BUDGET {
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

/// Text that refuses to grow past a limit.
struct BoundedText {
    text: String,
    limit: usize,
}

impl BoundedText {
    fn new(limit: usize) -> Self {
        BoundedText {
            text: String::new(),
            limit,
        }
    }
}

impl std::fmt::Write for BoundedText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > self.limit {
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// `expression` compiled once, to evaluate as minijinja itself would once a guard has
/// checked its operands.
fn builtin(expression: impl Into<Cow<'static, str>>) -> Expression<'static, 'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env
    });
    env.compile_expression_owned(expression)
        .expect("the guards' expressions compile")
}
#[cfg(test)]
mod tests {
    use super::super::tests::conversation;
    use super::super::{ChatMessage, ChatTemplate, ChatTemplateError};
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn render(source: &str, sandboxed: bool) -> Result<String, ChatTemplateError> {
        let tools =
            serde_json::json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
        ChatTemplate::compile(source, "<s>", "</s>", sandboxed)?.render_with_tools(
            &conversation(),
            Some(&tools),
            true,
        )
    }

    #[test]
    fn guarded_templates_render_as_minijinja_does() {
        let sources = [
            include_str!("../../../../tests/fixtures/tokenizers/qwen2/chat_template.jinja"),
            include_str!("../../../../tests/fixtures/tokenizers/phi-3/chat_template.jinja"),
            "{{ (1 + 2) * 3 }}{{ 1 + 2.5 }}{{ [1] + [2] }}{{ -2 * 3 }}{{ 'ab' * 3 }}{{ [1, 2] * 2 }}{{ 2 * [3] }}{{ 2 ** 3 * 2 }}",
            "{{ 'a' ~ 1 ~ none ~ [1] }}{{ (messages|length * 2) ~ '|' ~ messages[1:]|map(attribute='role')|join(',') }}",
            "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.content|upper if loop.last else m.content[::-1] }}{% endfor %}",
            "{% macro f(x, y=2 * 3) %}{{ x ~ y }}{% if x > 0 %}{{ f(x - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
            "{% macro wrap() %}[{{ caller('z' * 2) }}]{% endmacro %}{% call(v) wrap() %}{{ v ~ '!' }}{% endcall %}",
            "{% set ns = namespace(s='') %}{% for m in messages %}{% set ns.s = ns.s ~ m.role[0] + '.' %}{% endfor %}{{ ns.s }}",
            "{{ messages[0].content is string }}{{ messages[0].content is not defined }}{{ 5 is divisibleby 5 }}{{ x is undefined and not 1 in [2] }}",
            "{{ 'a\nb'|indent(2) }}{{ 'a\nb'|indent(width=3, first=true) }}{{ 'abcb'|replace('b', 'xy') }}{{ '%s-%05d'|format('q', 42) }}{{ [1, 2]|join('-') }}",
            "{{ [1, 'a']|string }}{{ {'k': [1]}|pprint }}{{ 'abc'|list }}{{ [1, 2, 3]|batch(2, 0) }}{{ [1, 2, 3]|slice(2) }}",
            "{{ 'a-b'.replace('-', '+') }}{{ '{}:{}'.format(1, 'x') }}{{ ','.join(['a', 'b']) }}{{ ' x '.strip() }}{{ messages[0].content.split(' ')|length }}",
            "{% filter upper %}abc{{ 1 + 1 }}{% endfilter %}{% set t | lower %}ABC{% endset %}{{ t }}",
            "{{ [1, 2, 3][1:] }}{{ {'a': 1 + 1}['a'] }}{{ (1, 2 * 2) }}{{ 1 if 2 * 2 == 4 else 0 }}{{ x|default(3 * 3) }}{{ 1 < 2 < 3 }}",
            "{% for x in [[1, [2]], [3]] recursive %}{% if x is sequence %}({{ loop(x) }}){% else %}{{ x * 10 }}{% endif %}{% endfor %}",
            "{% with a = 2 * 2 %}{{ a ~ a }}{% endwith %}{{ tools|tojson(indent=2) }}{{ range(3)|list }}",
            "{%- for m in messages -%}\n  {{- m.role|title }}: {{ m.content|trim }}\n{% endfor -%}\n{{ '-' * 3 }}",
        ];
        for source in sources {
            let plain = render(source, false).expect(source);
            assert_eq!(render(source, true).expect(source), plain, "{source}");
        }
    }

    #[test]
    fn runaway_values_end_with_an_error() {
        for source in [
            // A lazy repetition read a billion times.
            "{{ (1000000000 * [])|list }}",
            "{{ 1 in 100000000 * [0] }}",
            // Doubling a string or a list.
            "{% set ns = namespace(a='x') %}{% for i in range(40) %}{% set ns.a = ns.a ~ ns.a %}{% endfor %}",
            "{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = ns.a + ns.a %}{% endfor %}{{ ns.a|list|length }}",
            "{% macro d(s, n) %}{{ d(s + s, n - 1) if n else s|length }}{% endmacro %}{{ d('x', 60) }}",
            // Filters and methods that build far more than they are given.
            "{{ ' '|indent(300000000) }}",
            "{{ '%300000000d'|format(1) }}",
            "{{ 'aaaa'|replace('a', 'b' * 90000000) }}",
            "{{ 'ab'.replace('', 'x' * 100000000) }}",
            "{{ '{:>900000000}'.format(1) }}",
            "{{ [1]|tojson(indent=300000000) }}",
            "{% set s = 'x' * 1000000 %}{{ ([s] * 1000)|join|length }}",
            "{% set s = 'x' * 1000000 %}{{ ([s] * 1000)|tojson|length }}",
            "{% set s = 'x' * 1000000 %}{{ (([s] * 1000) ~ '')|length }}",
            "{{ [1]|batch(1000000000, 0)|list }}",
            // Big values made again and again.
            "{% for i in range(30) %}{% set y = 'x' * 90000000 %}{% endfor %}",
            "{% for i in range(100000) %}{% if 99999 in range(100000) %}{% endif %}{% endfor %}",
        ] {
            let err = render(source, true).unwrap_err();
            assert!(
                matches!(&err, ChatTemplateError::Render { message, .. } if message.contains("MiB of values")),
                "{source}: {err:?}"
            );
        }
    }

    /// Work without allocation is bounded by the clock (wasm32-unknown-unknown has none).
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    #[test]
    fn runaway_work_ends_at_the_time_limit() {
        let source = "{% set r = range(100000)|list %}{% for i in range(100000) %}{% for j in range(100) %}{% if 99999 in r %}{% endif %}{% endfor %}{% endfor %}";
        let err = render(source, true).unwrap_err();
        assert!(
            matches!(&err, ChatTemplateError::Render { message, .. } if message.contains("ran longer than 2 s")),
            "{err:?}"
        );
    }

    #[test]
    fn errors_keep_their_lines() {
        let source =
            "a\n{{ 1 + 1 }}\n{{ 'x' ~ (1 * 2) }}\n{{ messages[0].content.no_such_method() }}";
        assert!(
            matches!(
                render(source, true),
                Err(ChatTemplateError::Render { line: Some(4), .. })
            ),
            "{:?}",
            render(source, true)
        );
        assert!(matches!(
            ChatTemplate::new("x\n{{ 1 + }}", "", ""),
            Err(ChatTemplateError::Syntax { line: Some(2), .. })
        ));
    }

    /// The same comparison over a folder of real chat templates (llama.cpp ships a hundred in
    /// `models/templates`): `SYNAPSE_TEMPLATE_DIR=... cargo test -p synapse-inference
    /// --features chat-template -- --ignored real_templates`.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    #[ignore = "needs SYNAPSE_TEMPLATE_DIR"]
    fn real_templates_render_as_minijinja_does() {
        let dir = std::env::var("SYNAPSE_TEMPLATE_DIR").expect("SYNAPSE_TEMPLATE_DIR");
        let tools = serde_json::json!([{"type": "function", "function": {"name": "get_weather",
            "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let messages = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi!\nThere"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "Weather in Paris?"),
        ];
        let (mut same, mut both_failed) = (0, 0);
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            let source = std::fs::read_to_string(&path).unwrap();
            for tools in [None, Some(&tools)] {
                let render = |sandboxed| {
                    ChatTemplate::compile(&source, "<s>", "</s>", sandboxed)
                        .and_then(|t| t.render_with_tools(&messages, tools, true))
                };
                match (render(false), render(true)) {
                    (Ok(plain), Ok(guarded)) => {
                        assert_eq!(plain, guarded, "{}", path.display());
                        same += 1;
                    }
                    (Err(_), Err(_)) => both_failed += 1,
                    (plain, guarded) => panic!("{}: {plain:?} vs {guarded:?}", path.display()),
                }
            }
        }
        eprintln!("{same} renders identical, {both_failed} failed both ways");
        assert!(same > 0);
    }
}
