//! The tenants file: YAML that declares flavors, priority classes, cohorts and tenants.
//!
//! [`parse`] turns the text into a validated [`Tenancy`]; [`load`] reads a file first. Every
//! refusal is a [`TenantFileError`] naming the file, the line, the field (a path such as
//! `tenants[2].quotas.A100.lendingLimit`) and what is wrong, with how to fix it. The YAML tree is
//! walked by hand (through `marked-yaml`) rather than deserialised, so that every field, unknown
//! keys included, comes with its line.
//!
//! This module checks the file's structure only (YAML syntax, types, allowed and required keys,
//! the file's non-empty `flavors` and `tenants`) and hands the values, each with its line and
//! field, to the shared builder (`tenancy::build`), which validates them exactly as it validates
//! Gantry's custom resources.
//!
//! In a cluster, flavors, cohorts and tenants are objects; the cluster-wide sections (`currency`,
//! `timing`, `priorityClasses`, `kindPriorities`) stay in a settings file, read by
//! [`parse_settings`].
//!
//! Units: quantities are GPUs (cores for `cpu`) with at most 3 decimals, or Kubernetes milli
//! strings such as `"2500m"`, stored in milli-units; prices are per GPU-hour (core-hour for
//! `cpu`) with at most 6 decimals, stored in micro-units; durations are whole seconds or a number
//! with a unit: `90s`, `5m`, `2h`, `1d`. See `examples/tenants/` for annotated files.

use super::build::{
    self, At, Declared, FieldRefusal, Form, Origin, RawBudget, RawClass, RawCohort, RawFlavor,
    RawIdleNotebooks, RawList, RawMap, RawPreemption, RawQuota, RawSettings, RawTenant, Val,
};
use super::{Settings, Tenancy};
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node};
use std::cell::RefCell;
use std::path::Path;

/// A refused tenants file: where, which field, what is wrong and how to fix it.
///
/// Displays as `{file}:{line}: {field}: {problem}`, leaving out the line or field when unknown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}{}: {}{problem}", at_line(.line), field_prefix(.field))]
pub struct TenantFileError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub problem: String,
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

type Res<T> = Result<T, TenantFileError>;

/// Reads and parses the tenants file at `path`.
pub fn load(path: &Path) -> Res<Tenancy> {
    load_with_settings(path).map(|(tenancy, _)| tenancy)
}

/// Parses and validates a tenants file; `file` is the name used in error messages.
pub fn parse(file: &str, text: &str) -> Res<Tenancy> {
    parse_with_settings(file, text).map(|(tenancy, _)| tenancy)
}

/// Reads and parses the tenants file at `path`, with its cluster-wide settings.
pub fn load_with_settings(path: &Path) -> Res<(Tenancy, Settings)> {
    read(path, "tenants file").and_then(|(file, text)| parse_with_settings(&file, &text))
}

/// Parses and validates a tenants file; returns also its cluster-wide settings (which the
/// [`Tenancy`] keeps only in part: it has no cluster-wide class per kind).
pub fn parse_with_settings(file: &str, text: &str) -> Res<(Tenancy, Settings)> {
    parse_tree(text).map_err(|e| TenantFileError { file: file.to_string(), ..e })
}

/// Reads and parses the settings file at `path`.
pub fn load_settings(path: &Path) -> Res<Settings> {
    read(path, "settings file").and_then(|(file, text)| parse_settings(&file, &text))
}

/// Parses and validates a settings file: a tenants file with only the cluster-wide sections
/// (`currency`, `timing`, `priorityClasses`, `kindPriorities`), all optional, as a cluster keeps
/// it beside its GpuFlavor, Cohort and Tenant objects. An empty file gives the defaults. The
/// sections that are objects in a cluster (`flavors`, `cohorts`, `tenants`) are refused.
pub fn parse_settings(file: &str, text: &str) -> Res<Settings> {
    settings_tree(text).map_err(|e| TenantFileError { file: file.to_string(), ..e })
}

/// Every refusal of the tenants file `text` at once (empty: the file is good), in line order, for
/// `gantry check tenants`. Where [`parse`] stops at the first problem, this goes on: an unknown
/// key or a bad optional value is left out and the rest read; a list item missing a required key
/// is left out whole; the builder then reports every refusal of what was read. A YAML syntax
/// error still ends the check (nothing after it can be read reliably).
pub fn check(file: &str, text: &str) -> (Option<(Tenancy, Settings)>, Vec<TenantFileError>) {
    /// Ends the collecting when the check ends, however it ends, so that a later [`parse`] on
    /// this thread stops at its first problem again.
    struct Collecting;
    impl Drop for Collecting {
        fn drop(&mut self) {
            COLLECT.with(|c| c.borrow_mut().take());
        }
    }
    COLLECT.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let collecting = Collecting;
    let result = parse_tree_all(text);
    let mut errors = COLLECT.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(collecting);
    let parsed = match result {
        Ok(Ok(parsed)) if errors.is_empty() => Some(parsed),
        Ok(Ok(_)) => None,
        Ok(Err(refusals)) => {
            errors.extend(refusals.into_iter().map(refusal_error));
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    };
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errors.dedup();
    for e in &mut errors {
        e.file = file.to_string();
    }
    (parsed, errors)
}

thread_local! {
    /// Set while [`check`] runs: the problems recorded so far, instead of stopping at the first.
    static COLLECT: RefCell<Option<Vec<TenantFileError>>> = const { RefCell::new(None) };
}

/// Records `e` and goes on when checking the whole file; otherwise stops with it.
fn record(e: TenantFileError) -> Res<()> {
    COLLECT.with(|c| match c.borrow_mut().as_mut() {
        Some(errors) => {
            errors.push(e);
            Ok(())
        }
        None => Err(e),
    })
}

/// An optional value that could not be read: absent, once recorded (see [`record`]).
fn soft<T>(r: Res<Option<T>>) -> Res<Option<T>> {
    r.or_else(|e| record(e).map(|()| None))
}

/// A list item that could not be read: left out, once recorded (see [`record`]).
fn item<T>(r: Res<T>) -> Res<Option<T>> {
    r.map(Some).or_else(|e| record(e).map(|()| None))
}

fn read(path: &Path, what: &str) -> Res<(String, String)> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((file, text)),
        Err(e) => Err(TenantFileError {
            file,
            line: None,
            field: String::new(),
            problem: format!("cannot read the {what}: {e}; check the path"),
        }),
    }
}

fn yaml(text: &str) -> Res<Node> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true).prevent_coercion(true);
    marked_yaml::parse_yaml_with_options(0, text, options).map_err(yaml_error)
}

fn parse_tree(text: &str) -> Res<(Tenancy, Settings)> {
    parse_tree_all(text)?.map_err(first)
}

/// The file read, then built: the reading's first problem, or the builder's every refusal.
fn parse_tree_all(text: &str) -> Res<Result<(Tenancy, Settings), Vec<FieldRefusal>>> {
    let root = yaml(text)?;
    let top = Obj::new(&root, "", TOP_KEYS)?;
    let raw_settings = settings_raw(&top)?;
    let flavors = flavors(&top)?;
    let cohorts = cohorts(&top)?;
    let tenants = tenants(&top)?;
    let settings = match build::settings(&raw_settings, &FileForm) {
        Ok(s) => s,
        Err(mut refusals) => {
            // The tenants are still built, against default settings, for their own refusals.
            let defaults = Settings::default();
            if let Err(more) = build::tenancy(&defaults, &flavors, &cohorts, &tenants, &FileForm) {
                refusals.extend(more);
            }
            return Ok(Err(refusals));
        }
    };
    Ok(build::tenancy(&settings, &flavors, &cohorts, &tenants, &FileForm).map(|t| (t, settings)))
}

fn settings_tree(text: &str) -> Res<Settings> {
    if text.lines().all(|l| matches!(l.trim_start().chars().next(), None | Some('#'))) {
        return Ok(Settings::default());
    }
    let root = yaml(text)?;
    if let Some(key) = root.as_mapping().and_then(|m| m.keys().find(|k| OBJECT_KEYS.contains(&k.as_str()))) {
        let problem = format!(
            "`{}` does not belong in the settings file: in a cluster, flavors, cohorts and tenants are \
             GpuFlavor, Cohort and Tenant objects; remove the section and create the objects \
             (`gantry crd --from-tenants FILE` prints a tenants file's as objects)",
            key.as_str()
        );
        return Err(err(key_line(key), key.as_str(), problem));
    }
    let top = Obj::new(&root, "", SETTINGS_KEYS)?;
    build::settings(&settings_raw(&top)?, &FileForm).map_err(first)
}

const TOP_KEYS: &[&str] =
    &["currency", "timing", "flavors", "priorityClasses", "kindPriorities", "cohorts", "tenants"];
const SETTINGS_KEYS: &[&str] = &["currency", "timing", "priorityClasses", "kindPriorities"];
const OBJECT_KEYS: &[&str] = &["flavors", "cohorts", "tenants"];
const TENANT_KEYS: &[&str] = &[
    "name",
    "namespaces",
    "cohort",
    "weight",
    "priorityClasses",
    "kindPriorities",
    "quotas",
    "prices",
    "budget",
    "preemption",
    "idleNotebooks",
];

/// The file's words for declaring a missing name.
struct FileForm;

impl Form for FileForm {
    fn declare(&self, what: Declared) -> String {
        let list = match what {
            Declared::Flavor => "flavors",
            Declared::Cohort => "cohorts",
            Declared::PriorityClass => "priorityClasses",
        };
        format!("declare it under `{list}`")
    }
}

/// The first refusal of the builder, as the file's error ([`parse`] reports one at a time).
fn first(refusals: Vec<FieldRefusal>) -> TenantFileError {
    match refusals.into_iter().next() {
        Some(r) => refusal_error(r),
        None => err(None, "", "refused without a reason; please report this"),
    }
}

fn refusal_error(r: FieldRefusal) -> TenantFileError {
    match r {
        FieldRefusal { at: At { origin: Origin::Line(line), field }, problem } => err(line, &field, problem),
        FieldRefusal { at, problem } => err(None, &at.item(), problem),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and YAML access

fn err(line: Option<usize>, field: &str, problem: impl Into<String>) -> TenantFileError {
    TenantFileError { file: String::new(), line, field: field.to_string(), problem: problem.into() }
}

/// An error at `node`.
fn fail<T>(node: &Node, field: &str, problem: impl Into<String>) -> Res<T> {
    Err(err(line(node), field, problem))
}

/// The 1-based line where a node starts.
fn line(node: &Node) -> Option<usize> {
    node.span().start().map(|m| m.line())
}

fn key_line(key: &MarkedScalarNode) -> Option<usize> {
    key.span().start().map(|m| m.line())
}

/// `parent.key`, or `key` at the top.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn yaml_error(e: LoadError) -> TenantFileError {
    let (marker, problem) = match &e {
        LoadError::ScanError(m, scan) => (
            Some(*m),
            format!("YAML syntax error: {}; check the indentation, colons and brackets", scan.info()),
        ),
        LoadError::DuplicateKey(dup) => {
            let first = key_line(&dup.prev_key).map_or(String::new(), |l| format!(" (first on line {l})"));
            let problem =
                format!("key `{}` appears twice in the same mapping{first}; remove one", dup.key.as_str());
            return err(key_line(&dup.key), dup.key.as_str(), problem);
        }
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => {
            (Some(*m), "the file must be a mapping with keys such as `flavors:` and `tenants:`".to_string())
        }
        LoadError::UnexpectedAnchor(m) => (
            Some(*m),
            "YAML anchors and aliases (&name, *name) are not supported; write the values out".to_string(),
        ),
        LoadError::UnexpectedTag(m) => {
            (Some(*m), "YAML tags (!name) are not supported; remove the tag".to_string())
        }
        LoadError::MappingKeyMustBeScalar(m) => {
            (Some(*m), "mapping keys must be plain names, not lists or mappings".to_string())
        }
    };
    err(marker.map(|m| m.line()), "", problem)
}

/// A plain (unquoted) empty value, `~` or `null`: treated as if the key were absent.
fn is_null(node: &Node) -> bool {
    matches!(node, Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

fn wrong_type(node: &Node, field: &str, want: &str) -> TenantFileError {
    let found = match node {
        Node::Scalar(_) => "a single value",
        Node::Mapping(_) => "a mapping (key: value)",
        Node::Sequence(_) => "a list",
    };
    err(line(node), field, format!("expected {want}, found {found}"))
}

/// A single value, with its line and field, for the builder.
fn val(node: &Node, field: &str) -> Res<Val> {
    match node {
        Node::Scalar(s) => Ok(Val::new(s.as_str(), At::line(line(node), field))),
        _ => Err(wrong_type(node, field, "a single value")),
    }
}

/// The items of a list.
fn list<'a>(node: &'a Node, field: &str) -> Res<&'a [Node]> {
    node.as_sequence().map(|s| s.as_slice()).ok_or_else(|| wrong_type(node, field, "a list"))
}

/// A list of single values.
fn val_list(node: &Node, field: &str) -> Res<RawList<Val>> {
    let items = list(node, field)?.iter().enumerate().map(|(k, item)| val(item, &format!("{field}[{k}]")));
    Ok(RawList { at: At::line(line(node), field), items: items.collect::<Res<_>>()? })
}

/// The items of a list that must have at least one; `hint` says what to put in it.
fn nonempty_list<'a>(node: &'a Node, field: &str, hint: &str) -> Res<&'a [Node]> {
    let items = list(node, field)?;
    if items.is_empty() {
        return fail(node, field, format!("the list is empty; {hint}"));
    }
    Ok(items)
}

/// The entries of a mapping whose keys are free (flavor names, kind names).
fn entries<'a>(node: &'a Node, field: &str) -> Res<&'a MarkedMappingNode> {
    node.as_mapping().ok_or_else(|| wrong_type(node, field, "a mapping (key: value)"))
}

/// A mapping whose keys are names: each key (with its line) and its value read by `value`.
fn name_map<T>(node: &Node, field: &str, value: impl Fn(&Node, &str) -> Res<T>) -> Res<RawMap<T>> {
    let mut out = Vec::new();
    for (key, node) in entries(node, field)?.iter() {
        let field = join(field, key.as_str());
        let name = Val::new(key.as_str(), At::line(key_line(key), &field));
        out.push((name, value(node, &field)?));
    }
    Ok(out)
}

/// A mapping whose keys have been checked against the allowed ones.
struct Obj<'a> {
    node: &'a Node,
    map: &'a MarkedMappingNode,
    path: String,
}

impl<'a> Obj<'a> {
    /// `node` as a mapping; any key not in `allowed` is refused, with the allowed ones listed.
    fn new(node: &'a Node, path: &str, allowed: &[&str]) -> Res<Self> {
        let map = entries(node, path)?;
        // Unknown keys are never read, so checking the whole file goes on past them.
        for key in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
            let problem = format!(
                "unknown key `{}`{}; allowed keys here: {}",
                key.as_str(),
                build::suggest(key.as_str(), allowed.iter().copied()),
                allowed.join(", ")
            );
            record(err(key_line(key), &join(path, key.as_str()), problem))?;
        }
        Ok(Obj { node, map, path: path.to_string() })
    }

    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Where the mapping is.
    fn at(&self) -> At {
        At::line(line(self.node), &self.path)
    }

    /// The value of `key`, `None` when absent or null.
    fn opt(&self, key: &str) -> Option<&'a Node> {
        self.map.get_node(key).filter(|n| !is_null(n))
    }

    /// The value of a required key; `hint` says what to write.
    fn req(&self, key: &str, hint: &str) -> Res<&'a Node> {
        let missing =
            || err(line(self.node), &self.field(key), format!("missing required key `{key}`; {hint}"));
        self.opt(key).ok_or_else(missing)
    }

    /// The single value of an optional key.
    fn opt_val(&self, key: &str) -> Res<Option<Val>> {
        soft(self.opt(key).map(|n| val(n, &self.field(key))).transpose())
    }

    /// The single value of a required key.
    fn req_val(&self, key: &str, hint: &str) -> Res<Val> {
        val(self.req(key, hint)?, &self.field(key))
    }

    /// The `name` of a list item; `what` names the item in the hint.
    fn name(&self, what: &str) -> Res<Val> {
        self.req_val("name", &format!("give the {what} a name, e.g. `name: example`"))
    }
}

// ---------------------------------------------------------------------------------------------
// Sections

fn settings_raw(top: &Obj) -> Res<RawSettings> {
    let mut raw = RawSettings { currency: top.opt_val("currency")?, ..RawSettings::default() };
    if let Some(node) = top.opt("timing") {
        let obj = Obj::new(node, "timing", &["reclaimWindow", "minRuntime"])?;
        raw.reclaim_window = obj.opt_val("reclaimWindow")?;
        raw.min_runtime = obj.opt_val("minRuntime")?;
    }
    if let Some(node) = top.opt("priorityClasses") {
        let mut classes = Vec::new();
        for (i, node) in list(node, "priorityClasses")?.iter().enumerate() {
            let class = item((|| {
                let obj = Obj::new(node, &format!("priorityClasses[{i}]"), &["name", "value"])?;
                let name = obj.name("priority class")?;
                let value = obj.req_val("value", "give the class a priority, e.g. `value: 500`")?;
                Ok(RawClass { at: obj.at(), name, value })
            })())?;
            classes.extend(class);
        }
        raw.priority_classes = Some(RawList { at: At::line(line(node), "priorityClasses"), items: classes });
    }
    if let Some(node) = top.opt("kindPriorities") {
        raw.kind_priorities = name_map(node, "kindPriorities", val)?;
    }
    Ok(raw)
}

fn flavors(top: &Obj) -> Res<Vec<RawFlavor>> {
    let hint = "list the GPU models (and `cpu`) that quotas are given in, e.g. `flavors: [{name: A100}]`";
    let items = nonempty_list(top.req("flavors", hint)?, "flavors", hint)?;
    let mut flavors = Vec::with_capacity(items.len());
    for (i, node) in items.iter().enumerate() {
        let flavor = item((|| {
            let obj = Obj::new(node, &format!("flavors[{i}]"), &["name", "price", "sharing"])?;
            Ok(RawFlavor {
                at: obj.at(),
                name: obj.name("flavor")?,
                key: None,
                price: obj.opt_val("price")?,
                sharing: obj.opt_val("sharing")?,
            })
        })())?;
        flavors.extend(flavor);
    }
    Ok(flavors)
}

fn cohorts(top: &Obj) -> Res<Vec<RawCohort>> {
    let Some(node) = top.opt("cohorts") else { return Ok(Vec::new()) };
    let mut cohorts = Vec::new();
    for (i, node) in list(node, "cohorts")?.iter().enumerate() {
        let cohort = item((|| {
            let obj = Obj::new(node, &format!("cohorts[{i}]"), &["name", "parent"])?;
            Ok(RawCohort { at: obj.at(), name: obj.name("cohort")?, parent: obj.opt_val("parent")? })
        })())?;
        cohorts.extend(cohort);
    }
    Ok(cohorts)
}

fn tenants(top: &Obj) -> Res<Vec<RawTenant>> {
    let hint = "list at least one tenant, e.g. `tenants: [{name: team-a, namespaces: [team-a]}]`";
    let items = nonempty_list(top.req("tenants", hint)?, "tenants", hint)?;
    let mut tenants = Vec::with_capacity(items.len());
    for (i, node) in items.iter().enumerate() {
        tenants.extend(item(Obj::new(node, &format!("tenants[{i}]"), TENANT_KEYS).and_then(|o| tenant(&o)))?);
    }
    Ok(tenants)
}

fn tenant(obj: &Obj) -> Res<RawTenant> {
    let name = obj.name("tenant")?;
    let hint =
        "list the Kubernetes namespaces whose workloads belong to this tenant, e.g. `namespaces: [team-a]`";
    let namespaces = val_list(obj.req("namespaces", hint)?, &obj.field("namespaces"))?;
    let map = |key: &str, value: fn(&Node, &str) -> Res<_>| {
        obj.opt(key).map_or(Ok(Vec::new()), |node| name_map(node, &obj.field(key), value))
    };
    Ok(RawTenant {
        at: obj.at(),
        name,
        namespaces,
        // The file has no selectors: a tenant lists its namespaces.
        namespaces_may_be_empty: false,
        cohort: obj.opt_val("cohort")?,
        weight: obj.opt_val("weight")?,
        priority_classes: obj
            .opt("priorityClasses")
            .map(|n| val_list(n, &obj.field("priorityClasses")))
            .transpose()?,
        kind_priorities: map("kindPriorities", val)?,
        quotas: obj
            .opt("quotas")
            .map_or(Ok(Vec::new()), |node| name_map(node, &obj.field("quotas"), quota))?,
        prices: map("prices", val)?,
        budget: obj.opt("budget").map(|n| budget(n, &obj.field("budget"))).transpose()?,
        preemption: obj.opt("preemption").map(|n| preemption(n, &obj.field("preemption"))).transpose()?,
        idle_notebooks: obj
            .opt("idleNotebooks")
            .map(|n| idle_notebooks(n, &obj.field("idleNotebooks")))
            .transpose()?,
    })
}

fn idle_notebooks(node: &Node, field: &str) -> Res<RawIdleNotebooks> {
    let obj = Obj::new(node, field, &["stopAfter", "when"])?;
    Ok(RawIdleNotebooks {
        at: obj.at(),
        stop_after: obj
            .req_val("stopAfter", "how long a notebook's GPUs may sit idle, e.g. `stopAfter: 2h`")?,
        when: obj.opt_val("when")?,
    })
}

fn preemption(node: &Node, field: &str) -> Res<RawPreemption> {
    let keys = ["withinTenant", "reclaimWithinCohort", "borrowWithinCohort", "whenCanPreempt"];
    let obj = Obj::new(node, field, &keys)?;
    let (borrow_policy, borrow_max_priority) = match obj.opt("borrowWithinCohort") {
        None => (None, None),
        Some(n) => {
            let b = Obj::new(n, &obj.field("borrowWithinCohort"), &["policy", "maxPriorityThreshold"])?;
            (b.opt_val("policy")?, b.opt_val("maxPriorityThreshold")?)
        }
    };
    Ok(RawPreemption {
        within_tenant: obj.opt_val("withinTenant")?,
        reclaim_within_cohort: obj.opt_val("reclaimWithinCohort")?,
        borrow_policy,
        borrow_max_priority,
        when_can_preempt: obj.opt_val("whenCanPreempt")?,
    })
}

fn quota(node: &Node, field: &str) -> Res<RawQuota> {
    if let Node::Scalar(s) = node {
        let problem =
            format!("expected a mapping, found a single value; write `{{nominal: {}}}`", s.as_str());
        return fail(node, field, problem);
    }
    let obj = Obj::new(node, field, &["nominal", "borrowingLimit", "lendingLimit"])?;
    Ok(RawQuota {
        nominal: obj.req_val("nominal", "give the guaranteed amount, e.g. `nominal: 8`")?,
        borrowing_limit: obj.opt_val("borrowingLimit")?,
        lending_limit: obj.opt_val("lendingLimit")?,
    })
}

fn budget(node: &Node, field: &str) -> Res<RawBudget> {
    let obj = Obj::new(node, field, &["gpuHoursPerMonth", "whenExhausted"])?;
    Ok(RawBudget {
        gpu_hours_per_month: obj.req_val("gpuHoursPerMonth", "e.g. `gpuHoursPerMonth: 5000`")?,
        when_exhausted: obj.opt_val("whenExhausted")?,
    })
}
