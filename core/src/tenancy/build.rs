//! The shared builder: validates a tenancy's values, whatever form they were written in, and
//! builds the [`Settings`] and the [`Tenancy`].
//!
//! A form (the tenants file, `tenancy::file`; Gantry's custom resources, the `gantry-crds` crate)
//! checks only its own structure (types, allowed keys, required keys) and hands over the values as
//! written: [`Val`], the text plus where it was written ([`At`]: a line and field path of a file,
//! or an object and field). Everything else is checked here, once: the syntax of quantities
//! (`8`, `2.5`, `"2500m"`), prices, durations and names; negative amounts and lending above
//! nominal; references to flavors, cohorts and priority classes; cohort cycles; a namespace owned
//! by two tenants; weights and budgets. Both forms therefore accept and refuse the same tenancies,
//! with the same words; only the place ([`At`]) and the way to declare a missing name
//! ([`Form::declare`]) differ.
//!
//! The builder does not stop at the first refusal: it returns all of them, in the order the values
//! were handed over. A form that reports one refusal (the tenants file) reports the first.

use super::{
    Budget, Cohort, Flavor, FlavorQuota, IdleNotebooks, Kind, Milli, PreemptionPolicy, PriorityClass,
    ReclaimWithinCohort, Seconds, Settings, Tenancy, Tenant, Timing, WhenCanPreempt, WhenExhausted,
    WithinTenant,
};
use std::collections::HashMap;

// ---------------------------------------------------------------------------------------------
// The intermediate form

/// Where something was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A line of a file (1-based), `None` when unknown.
    Line(Option<usize>),
    /// A named object, such as the `Tenant` named `team-a`.
    Object { kind: String, name: String },
}

/// Where a value was written: its origin and its field path (`tenants[0].quotas.A100.nominal` in
/// a file, `spec.quotas.a100.nominal` in an object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    pub origin: Origin,
    pub field: String,
}

impl At {
    /// A field at a line of a file.
    pub fn line(line: Option<usize>, field: impl Into<String>) -> At {
        At { origin: Origin::Line(line), field: field.into() }
    }

    /// A field of an object.
    pub fn object(kind: &str, name: &str, field: impl Into<String>) -> At {
        At { origin: Origin::Object { kind: kind.to_string(), name: name.to_string() }, field: field.into() }
    }

    /// How a message names the item declared at `self`: its field path in a file (`tenants[0]`),
    /// the object otherwise (`Tenant team-a`).
    pub fn item(&self) -> String {
        match &self.origin {
            Origin::Line(_) => self.field.clone(),
            Origin::Object { kind, name } if self.field.is_empty() => format!("{kind} {name}"),
            Origin::Object { kind, name } => format!("{kind} {name} {}", self.field),
        }
    }
}

/// A single value as written (a number is handed over as its text), and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Val {
    pub text: String,
    pub at: At,
}

impl Val {
    pub fn new(text: impl Into<String>, at: At) -> Val {
        Val { text: text.into(), at }
    }

    /// The text without surrounding white space.
    fn s(&self) -> &str {
        self.text.trim()
    }
}

/// A list, with where the list itself was written (for "the list is empty").
#[derive(Clone, Debug, PartialEq)]
pub struct RawList<T> {
    pub at: At,
    pub items: Vec<T>,
}

/// A mapping whose keys are names (flavor -> value, kind -> class): each key is a [`Val`] too.
pub type RawMap<T> = Vec<(Val, T)>;

/// The cluster-wide settings as written; `None`: not given, the default applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawSettings {
    pub currency: Option<Val>,
    pub reclaim_window: Option<Val>,
    pub min_runtime: Option<Val>,
    /// `None`: the built-in classes, one per [`Kind`].
    pub priority_classes: Option<RawList<RawClass>>,
    /// Kind -> class name.
    pub kind_priorities: RawMap<Val>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawClass {
    /// Where the class is declared (named in "declared twice (also ...)").
    pub at: At,
    pub name: Val,
    pub value: Val,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawFlavor {
    pub at: At,
    /// The flavor's name in the [`Tenancy`]: the GPU model (or `cpu`).
    pub name: Val,
    /// What tenants' quotas and prices call the flavor, when not its name (a `GpuFlavor`'s
    /// object name).
    pub key: Option<Val>,
    pub price: Option<Val>,
    /// `true` or `false` (absent: false): whether pods may share its GPUs.
    pub sharing: Option<Val>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawCohort {
    pub at: At,
    pub name: Val,
    pub parent: Option<Val>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawTenant {
    pub at: At,
    pub name: Val,
    pub namespaces: RawList<Val>,
    /// The caller has checked that the tenant names its namespaces some other way (a Tenant's
    /// `namespaceSelector`, which may match none yet), so an empty list is no error.
    pub namespaces_may_be_empty: bool,
    pub cohort: Option<Val>,
    pub weight: Option<Val>,
    /// `None`: every class.
    pub priority_classes: Option<RawList<Val>>,
    pub kind_priorities: RawMap<Val>,
    pub quotas: RawMap<RawQuota>,
    pub prices: RawMap<Val>,
    pub budget: Option<RawBudget>,
    pub preemption: Option<RawPreemption>,
    pub idle_notebooks: Option<RawIdleNotebooks>,
}

/// A tenant's `idleNotebooks` section (see [`IdleNotebooks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RawIdleNotebooks {
    pub at: At,
    pub stop_after: Val,
    /// `work-waits` (default) or `always`.
    pub when: Option<Val>,
}

/// A tenant's `preemption` section (see [`PreemptionPolicy`]); every key optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawPreemption {
    pub within_tenant: Option<Val>,
    pub reclaim_within_cohort: Option<Val>,
    /// `borrowWithinCohort.policy` and `.maxPriorityThreshold`.
    pub borrow_policy: Option<Val>,
    pub borrow_max_priority: Option<Val>,
    pub when_can_preempt: Option<Val>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawQuota {
    pub nominal: Val,
    pub borrowing_limit: Option<Val>,
    pub lending_limit: Option<Val>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RawBudget {
    pub gpu_hours_per_month: Val,
    pub when_exhausted: Option<Val>,
}

/// A refused value: where, and what is wrong with how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRefusal {
    pub at: At,
    pub problem: String,
}

/// What a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Declared {
    Flavor,
    Cohort,
    PriorityClass,
}

/// What differs between the forms in the messages.
pub trait Form {
    /// How to declare a missing flavor, cohort or priority class, e.g. "declare it under
    /// `flavors`"; the message goes on with " or fix the name".
    fn declare(&self, what: Declared) -> String;
}

// ---------------------------------------------------------------------------------------------
// Building

type One<T> = Result<T, FieldRefusal>;

fn refuse<T>(at: &At, problem: impl Into<String>) -> One<T> {
    Err(FieldRefusal { at: at.clone(), problem: problem.into() })
}

/// The refusals so far.
#[derive(Default)]
struct FieldRefusals(Vec<FieldRefusal>);

impl FieldRefusals {
    /// The value, or `None` with the refusal kept.
    fn keep<T>(&mut self, result: One<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    fn push(&mut self, at: &At, problem: impl Into<String>) {
        self.0.push(FieldRefusal { at: at.clone(), problem: problem.into() });
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<FieldRefusal>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// Validates the cluster-wide settings: currency, timing, priority classes and the class per
/// kind.
pub fn settings(raw: &RawSettings, form: &dyn Form) -> Result<Settings, Vec<FieldRefusal>> {
    let mut refusals = FieldRefusals::default();
    let currency = match &raw.currency {
        Some(v) => refusals.keep(name_text(v)).unwrap_or_default(),
        None => "USD".to_string(),
    };
    let default = Timing::default();
    let mut time =
        |v: &Option<Val>, default| v.as_ref().map_or(Some(default), |v| refusals.keep(duration(v)));
    let reclaim_window = time(&raw.reclaim_window, default.reclaim_window).unwrap_or_default();
    let min_runtime = time(&raw.min_runtime, default.min_runtime).unwrap_or_default();
    let priority_classes = classes(raw.priority_classes.as_ref(), &mut refusals);
    let mut kind_classes = default_kind_classes(&priority_classes);
    for (kind, class) in &raw.kind_priorities {
        if let Some((kind, class)) = refusals.keep(kind_entry(kind, class, &priority_classes, form)) {
            kind_classes[kind.index()] = class;
        }
    }
    let timing = Timing { reclaim_window, min_runtime };
    refusals.finish(Settings { currency, timing, priority_classes, kind_classes })
}

/// Validates flavors, cohorts and tenants under `settings` and builds the tenancy, everything in
/// the order given.
pub fn tenancy(
    settings: &Settings,
    flavors: &[RawFlavor],
    cohorts: &[RawCohort],
    tenants: &[RawTenant],
    form: &dyn Form,
) -> Result<Tenancy, Vec<FieldRefusal>> {
    let mut refusals = FieldRefusals::default();
    let (flavors, keys) = build_flavors(flavors, &mut refusals);
    let cohorts = build_cohorts(cohorts, form, &mut refusals);
    let shared = Shared { settings, flavors: &flavors, keys: &keys, cohorts: &cohorts, form };
    let tenants = build_tenants(tenants, &shared, &mut refusals);
    refusals.finish(Tenancy {
        flavors,
        cohorts,
        tenants,
        priority_classes: settings.priority_classes.clone(),
        timing: settings.timing,
        currency: settings.currency.clone(),
    })
}

/// The built-in priority classes, one per [`Kind`] named after it, at its default priority.
pub fn builtin_classes() -> Vec<PriorityClass> {
    Kind::ALL
        .into_iter()
        .map(|k| PriorityClass { name: k.name().to_string(), value: k.default_priority() })
        .collect()
}

/// Per kind: the class named after it, else the class whose value is closest to the kind's
/// default priority (ties to the lower value).
pub fn default_kind_classes(classes: &[PriorityClass]) -> [usize; 5] {
    Kind::ALL.map(|kind| {
        let distance =
            |c: &PriorityClass| ((i64::from(c.value) - i64::from(kind.default_priority())).abs(), c.value);
        let closest = classes.iter().enumerate().min_by_key(|(_, c)| distance(c)).map(|(i, _)| i);
        classes.iter().position(|c| c.name == kind.name()).or(closest).unwrap_or(0)
    })
}

/// The declared priority classes, or the built-in ones.
fn classes(raw: Option<&RawList<RawClass>>, refusals: &mut FieldRefusals) -> Vec<PriorityClass> {
    let Some(list) = raw else { return builtin_classes() };
    if list.items.is_empty() {
        let problem =
            "the list is empty; list at least one class, or remove the key to use the built-in classes";
        refusals.push(&list.at, problem);
    }
    let mut names = Names::new("priority class");
    let mut classes = Vec::with_capacity(list.items.len());
    for class in &list.items {
        refusals.keep(names.add(&class.name, &class.at, name_text));
        let value = refusals.keep(int32(&class.value)).unwrap_or_default();
        classes.push(PriorityClass { name: class.name.s().to_string(), value });
    }
    classes
}

/// One `kindPriorities` entry: the kind and the class's index.
fn kind_entry(kind: &Val, class: &Val, classes: &[PriorityClass], form: &dyn Form) -> One<(Kind, usize)> {
    let kinds = || Kind::ALL.into_iter().map(Kind::name);
    let Some(k) = Kind::parse(kind.s()) else {
        let list = kinds().collect::<Vec<_>>().join(", ");
        let problem = format!("unknown kind `{}`{}; kinds are: {list}", kind.s(), suggest(kind.s(), kinds()));
        return refuse(&kind.at, problem);
    };
    let names = classes.iter().map(|c| c.name.as_str());
    Ok((k, lookup(class, names, "priority class", form.declare(Declared::PriorityClass))?))
}

/// The flavors, and the name tenants call each by.
fn build_flavors(raw: &[RawFlavor], refusals: &mut FieldRefusals) -> (Vec<Flavor>, Vec<String>) {
    let mut names = Names::new("flavor");
    let mut keys = Names::new("flavor");
    let mut flavors = Vec::with_capacity(raw.len());
    let mut flavor_keys = Vec::with_capacity(raw.len());
    for flavor in raw {
        refusals.keep(names.add(&flavor.name, &flavor.at, name_text));
        if let Some(key) = &flavor.key {
            refusals.keep(keys.add(key, &flavor.at, name_text));
        }
        let price = flavor.price.as_ref().map_or(Some(0), |p| refusals.keep(amount(p, "price", &PRICE)));
        let sharing = flavor.sharing.as_ref().map_or(Ok(false), |v| match v.s() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => {
                refuse(&v.at, format!("sharing is {other:?}; write true (pods may share its GPUs) or false"))
            }
        });
        let sharing = refusals.keep(sharing).unwrap_or(false);
        flavors.push(Flavor {
            name: flavor.name.s().to_string(),
            price_micros: price.unwrap_or_default(),
            sharing,
        });
        flavor_keys.push(flavor.key.as_ref().unwrap_or(&flavor.name).s().to_string());
    }
    (flavors, flavor_keys)
}

fn build_cohorts(raw: &[RawCohort], form: &dyn Form, refusals: &mut FieldRefusals) -> Vec<Cohort> {
    let mut names = Names::new("cohort");
    let mut cohorts: Vec<Cohort> = raw
        .iter()
        .map(|c| {
            refusals.keep(names.add(&c.name, &c.at, name_text));
            Cohort { name: c.name.s().to_string(), parent: None }
        })
        .collect();
    for (i, c) in raw.iter().enumerate() {
        let Some(parent) = &c.parent else { continue };
        let names = cohorts.iter().map(|c| c.name.as_str());
        let index = refusals.keep(lookup(parent, names, "cohort", form.declare(Declared::Cohort)));
        if let Some(cohort) = cohorts.get_mut(i) {
            cohort.parent = index;
        }
    }
    for (i, c) in raw.iter().enumerate() {
        let (Some(parent), Some(cycle)) = (&c.parent, cycle_from(&cohorts, i)) else { continue };
        let names: Vec<&str> =
            cycle.iter().filter_map(|&c| cohorts.get(c)).map(|c| c.name.as_str()).collect();
        refusals.push(&parent.at, format!("cohort cycle: {}; remove one parent", names.join(" -> ")));
    }
    cohorts
}

/// The chain of parents from `start` back to itself, when `start` is on a cycle.
fn cycle_from(cohorts: &[Cohort], start: usize) -> Option<Vec<usize>> {
    let mut chain = vec![start];
    let mut at = cohorts.get(start)?.parent?;
    while chain.len() <= cohorts.len() {
        chain.push(at);
        if at == start {
            return Some(chain);
        }
        at = cohorts.get(at)?.parent?;
    }
    None
}

/// What tenants refer to.
struct Shared<'a> {
    settings: &'a Settings,
    flavors: &'a [Flavor],
    /// What tenants call each flavor.
    keys: &'a [String],
    cohorts: &'a [Cohort],
    form: &'a dyn Form,
}

impl Shared<'_> {
    fn class(&self, v: &Val) -> One<usize> {
        let names = self.settings.priority_classes.iter().map(|c| c.name.as_str());
        lookup(v, names, "priority class", self.form.declare(Declared::PriorityClass))
    }

    fn class_name(&self, class: usize) -> &str {
        self.settings.priority_classes.get(class).map_or("?", |c| c.name.as_str())
    }

    /// A per-flavor list from `entries` (flavor -> value), starting from `init`; flavors must
    /// be declared.
    fn per_flavor<R, T>(
        &self,
        entries: &RawMap<R>,
        mut init: Vec<T>,
        refusals: &mut FieldRefusals,
        value: impl Fn(&R) -> One<T>,
    ) -> Vec<T> {
        for (flavor, raw) in entries {
            let keys = self.keys.iter().map(String::as_str);
            let Some(f) = refusals.keep(lookup(flavor, keys, "flavor", self.form.declare(Declared::Flavor)))
            else {
                continue;
            };
            if let (Some(v), Some(slot)) = (refusals.keep(value(raw)), init.get_mut(f)) {
                *slot = v;
            }
        }
        init
    }
}

fn build_tenants(raw: &[RawTenant], shared: &Shared, refusals: &mut FieldRefusals) -> Vec<Tenant> {
    let mut names = Names::new("tenant");
    // namespace -> index in `raw` of the tenant that owns it
    let mut owners: HashMap<String, usize> = HashMap::new();
    let mut tenants = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        refusals.keep(names.add(&t.name, &t.at, dns_label));
        let namespaces = namespaces(raw, i, &mut owners, refusals);
        tenants.push(tenant(t, namespaces, shared, refusals));
    }
    tenants
}

/// The namespaces of tenant `i`, each claimed in `owners`.
fn namespaces(
    raw: &[RawTenant],
    i: usize,
    owners: &mut HashMap<String, usize>,
    refusals: &mut FieldRefusals,
) -> Vec<String> {
    let Some(t) = raw.get(i) else { return Vec::new() };
    let list = &t.namespaces;
    if list.items.is_empty() && !t.namespaces_may_be_empty {
        let hint = "list the Kubernetes namespaces whose workloads belong to this tenant, e.g. `namespaces: [team-a]`";
        refusals.push(&list.at, format!("the list is empty; {hint}"));
    }
    let name = t.name.s();
    let mut out = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let Some(ns) = refusals.keep(dns_label(item)) else { continue };
        if let Some(&owner) = owners.get(&ns) {
            let problem = match raw.get(owner).filter(|_| owner != i) {
                Some(other) => format!(
                    "namespace `{ns}` belongs to both tenant `{}` ({}) and tenant `{name}`; \
                     a namespace may belong to one tenant only, so remove it from one of them",
                    other.name.s(),
                    other.at.item()
                ),
                None => format!("namespace `{ns}` is listed twice for tenant `{name}`; remove one"),
            };
            refusals.push(&item.at, problem);
            continue;
        }
        owners.insert(ns.clone(), i);
        out.push(ns);
    }
    out
}

fn tenant(t: &RawTenant, namespaces: Vec<String>, shared: &Shared, refusals: &mut FieldRefusals) -> Tenant {
    let cohort = t.cohort.as_ref().and_then(|c| {
        let names = shared.cohorts.iter().map(|c| c.name.as_str());
        refusals.keep(lookup(c, names, "cohort", shared.form.declare(Declared::Cohort)))
    });
    let allowed_classes = allowed_classes(t, shared, refusals);
    let flavors = shared.flavors.len();
    let quotas = shared.per_flavor(&t.quotas, vec![FlavorQuota::default(); flavors], refusals, quota);
    let weight = t.weight.as_ref().map_or(Some(1.0), |w| refusals.keep(weight(w)));
    let kind_classes = kind_classes(t, shared, allowed_classes.as_deref(), refusals);
    let prices = shared.flavors.iter().map(|f| f.price_micros).collect();
    let prices_micros = shared.per_flavor(&t.prices, prices, refusals, |v| amount(v, "price", &PRICE));
    let budget = t.budget.as_ref().and_then(|b| refusals.keep(budget(b)));
    let preemption = t.preemption.as_ref().and_then(|p| refusals.keep(preemption(p))).unwrap_or_default();
    let idle_notebooks = t.idle_notebooks.as_ref().and_then(|n| refusals.keep(idle_notebooks(n)));
    Tenant {
        name: t.name.s().to_string(),
        namespaces,
        cohort,
        quotas,
        weight: weight.unwrap_or(1.0),
        allowed_classes: allowed_classes.unwrap_or_default(),
        kind_classes,
        prices_micros,
        budget,
        preemption,
        idle_notebooks,
    }
}

fn idle_notebooks(raw: &RawIdleNotebooks) -> One<IdleNotebooks> {
    let stop_after = duration(&raw.stop_after)?;
    if stop_after < 60 {
        let problem =
            "stopAfter is under a minute; the node agent measures idle time per minute, write at least `1m`";
        return refuse(&raw.stop_after.at, problem);
    }
    let always = match &raw.when {
        None => false,
        Some(v) => word(v, "when", &[("work-waits", false), ("always", true)])?,
    };
    Ok(IdleNotebooks { stop_after, always })
}

/// The classes the tenant may use; `None` when refused.
fn allowed_classes(t: &RawTenant, shared: &Shared, refusals: &mut FieldRefusals) -> Option<Vec<usize>> {
    let Some(list) = &t.priority_classes else {
        return Some((0..shared.settings.priority_classes.len()).collect());
    };
    let before = refusals.0.len();
    if list.items.is_empty() {
        refusals.push(
            &list.at,
            "the list is empty; list at least one class, or remove the key to allow them all",
        );
    }
    let mut allowed = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let Some(class) = refusals.keep(shared.class(item)) else { continue };
        if allowed.contains(&class) {
            refusals.push(&item.at, "this class is listed twice; remove one");
            continue;
        }
        allowed.push(class);
    }
    (refusals.0.len() == before).then_some(allowed)
}

/// The class per kind: the tenant's override, else the cluster-wide one; each must be allowed.
fn kind_classes(
    t: &RawTenant,
    shared: &Shared,
    allowed: Option<&[usize]>,
    refusals: &mut FieldRefusals,
) -> [usize; 5] {
    let mut kinds = shared.settings.kind_classes;
    let mut overrides: [Option<&At>; 5] = [None; 5];
    let mut refused = false;
    for (kind, class) in &t.kind_priorities {
        let names = &shared.settings.priority_classes;
        match refusals.keep(kind_entry(kind, class, names, shared.form)) {
            Some((kind, index)) => {
                kinds[kind.index()] = index;
                overrides[kind.index()] = Some(&class.at);
            }
            None => refused = true,
        }
    }
    let Some(allowed) = allowed.filter(|_| !refused) else { return kinds };
    let Some(kind) = Kind::ALL.into_iter().find(|k| !allowed.contains(&kinds[k.index()])) else {
        return kinds;
    };
    let class = shared.class_name(kinds[kind.index()]);
    let names: Vec<&str> = allowed.iter().map(|&c| shared.class_name(c)).collect();
    let names = names.join(", ");
    let classes_at = t.priority_classes.as_ref().map_or(&t.at, |l| &l.at);
    match overrides[kind.index()] {
        Some(at) => {
            let problem = format!(
                "class `{class}` is not in this tenant's priorityClasses ({names}); \
                 add `{class}` to {} or choose one of those",
                classes_at.field
            );
            refusals.push(at, problem);
        }
        None => {
            let problem = format!(
                "kind {kind} runs at class `{class}` by default, which this tenant may not use (allowed: {names}); \
                 add `{class}` to priorityClasses or set kindPriorities.{kind} to one of the allowed classes"
            );
            refusals.push(classes_at, problem);
        }
    }
    kinds
}

fn quota(raw: &RawQuota) -> One<FlavorQuota> {
    let get = |v: &Option<Val>, what| v.as_ref().map(|v| amount(v, what, &QUANTITY)).transpose();
    let nominal = amount(&raw.nominal, "nominal", &QUANTITY);
    let borrowing_limit = get(&raw.borrowing_limit, "borrowingLimit");
    let lending_limit = get(&raw.lending_limit, "lendingLimit");
    let quota =
        FlavorQuota { nominal: nominal?, borrowing_limit: borrowing_limit?, lending_limit: lending_limit? };
    match (quota.lending_limit, &raw.lending_limit) {
        (Some(lend), Some(v)) if lend > quota.nominal => {
            let problem = format!(
                "lendingLimit {} is above nominal {}; a tenant can lend at most its nominal quota, \
                 so lower lendingLimit or raise nominal",
                milli_text(lend),
                milli_text(quota.nominal)
            );
            refuse(&v.at, problem)
        }
        _ => Ok(quota),
    }
}

fn budget(raw: &RawBudget) -> One<Budget> {
    let hours = &raw.gpu_hours_per_month;
    let milli_hours = amount(hours, "gpuHoursPerMonth", &HOURS)?;
    let Some(milli_gpu_seconds) = milli_hours.checked_mul(3600) else {
        return refuse(&hours.at, "the budget is too large; use a smaller number");
    };
    let when_exhausted = match &raw.when_exhausted {
        None => WhenExhausted::IdleOnly,
        Some(v) => match v.s() {
            "idle-only" => WhenExhausted::IdleOnly,
            "refuse" => WhenExhausted::Refuse,
            other => {
                let problem = format!(
                    "unknown value `{other}`; write `idle-only` (run only on idle capacity) or `refuse`"
                );
                return refuse(&v.at, problem);
            }
        },
    };
    Ok(Budget { milli_gpu_seconds, when_exhausted })
}

/// One of `words` (the value's exact spelling, as in Kueue), or a refusal that lists them.
fn word<T: Copy>(v: &Val, key: &str, words: &[(&str, T)]) -> One<T> {
    match words.iter().find(|(w, _)| *w == v.s()) {
        Some(&(_, t)) => Ok(t),
        None => {
            let all: Vec<String> = words.iter().map(|(w, _)| format!("`{w}`")).collect();
            refuse(&v.at, format!("unknown {key} `{}`; write one of {}", v.s(), all.join(", ")))
        }
    }
}

fn preemption(raw: &RawPreemption) -> One<PreemptionPolicy> {
    let mut p = PreemptionPolicy::default();
    if let Some(v) = &raw.within_tenant {
        let words = [
            ("Never", WithinTenant::Never),
            ("LowerPriority", WithinTenant::LowerPriority),
            ("LowerOrNewerEqualPriority", WithinTenant::LowerOrNewerEqualPriority),
        ];
        p.within_tenant = word(v, "withinTenant", &words)?;
    }
    if let Some(v) = &raw.reclaim_within_cohort {
        let words = [
            ("Never", ReclaimWithinCohort::Never),
            ("LowerPriority", ReclaimWithinCohort::LowerPriority),
            ("Any", ReclaimWithinCohort::Any),
        ];
        p.reclaim_within_cohort = word(v, "reclaimWithinCohort", &words)?;
    }
    if let Some(v) = &raw.when_can_preempt {
        let words = [("TryNextFlavor", WhenCanPreempt::TryNextFlavor), ("Preempt", WhenCanPreempt::Preempt)];
        p.when_can_preempt = word(v, "whenCanPreempt", &words)?;
    }
    let policy = match &raw.borrow_policy {
        None => false,
        Some(v) => word(v, "borrowWithinCohort.policy", &[("Never", false), ("LowerPriority", true)])?,
    };
    p.borrow_within_cohort = match (&raw.borrow_max_priority, policy) {
        (Some(v), false) => {
            return refuse(
                &v.at,
                "a threshold needs `policy: LowerPriority`; add it, or remove the threshold",
            );
        }
        (None, false) => None,
        (None, true) => Some(i32::MAX),
        (Some(v), true) => match v.s().parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => {
                return refuse(&v.at, format!("`{}` is not a priority value; write a whole number, e.g. `maxPriorityThreshold: 100`", v.s()));
            }
        },
    };
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Names

/// A non-empty value, as used for names.
fn name_text(v: &Val) -> One<String> {
    match v.s() {
        "" => refuse(&v.at, "is empty; give it a name"),
        s => Ok(s.to_string()),
    }
}

/// `lowercase alnum and '-', 1..=63 chars, alnum at both ends`, as Kubernetes namespaces.
fn dns_label(v: &Val) -> One<String> {
    let s = name_text(v)?;
    if is_dns_label(&s) {
        return Ok(s);
    }
    let rule = "use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit";
    refuse(&v.at, format!("`{s}` is not a valid name; {rule}"))
}

/// Whether `s` is a DNS label (RFC 1123), as Kubernetes namespace names are.
pub fn is_dns_label(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    !s.is_empty() && s.len() <= 63 && s.chars().all(ok_char) && !s.starts_with('-') && !s.ends_with('-')
}

/// Names declared in one list, to refuse duplicates.
struct Names<'a> {
    what: &'static str,
    seen: HashMap<String, &'a At>,
}

impl<'a> Names<'a> {
    fn new(what: &'static str) -> Self {
        Names { what, seen: HashMap::new() }
    }

    /// The name `v` of the item declared at `item`, read by `read`; refused when an earlier item
    /// has it.
    fn add(&mut self, v: &Val, item: &'a At, read: fn(&Val) -> One<String>) -> One<String> {
        let name = read(v)?;
        if let Some(first) = self.seen.insert(name.clone(), item) {
            let problem = format!(
                "{} `{name}` is declared twice (also {}); names must be unique, so rename or remove one",
                self.what,
                first.item()
            );
            return refuse(&v.at, problem);
        }
        Ok(name)
    }
}

/// Index of the item named by `v` in `names`; `what` names the kind of item and `declare` says
/// how to declare one, for the error.
fn lookup<'n>(
    v: &Val,
    names: impl Iterator<Item = &'n str> + Clone,
    what: &str,
    declare: String,
) -> One<usize> {
    let name = v.s();
    if let Some(i) = names.clone().position(|n| n == name) {
        return Ok(i);
    }
    let declared: Vec<&str> = names.clone().collect();
    let problem = format!(
        "unknown {what} `{name}`{}; declared: {}; {declare} or fix the name",
        suggest(name, names),
        if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
    );
    refuse(&v.at, problem)
}

/// ` (did you mean `x`?)` when a candidate is a likely typo of `name`.
pub(crate) fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let close = candidates.into_iter().map(|c| (distance(&name.to_lowercase(), &c.to_lowercase()), c)).min();
    match close {
        Some((d, c)) if d <= 2 && d < name.chars().count() => format!(" (did you mean `{c}`?)"),
        _ => String::new(),
    }
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = i;
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// A plain decimal (`12`, `-4`, `2.50`) as an integer scaled by 10^`places` (`2.5`, 3 -> 2500);
/// `Err` says why not.
fn decimal(s: &str, places: usize) -> Result<i128, &'static str> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = frac.trim_end_matches('0');
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err("not a number");
    }
    if frac.len() > places {
        return Err("too many decimals to count exactly");
    }
    if int.trim_start_matches('0').len() > 24 {
        return Err("too large");
    }
    let padded = int.bytes().chain(frac.bytes()).chain(std::iter::repeat_n(b'0', places - frac.len()));
    let value = padded.fold(0i128, |v, b| v * 10 + i128::from(b - b'0'));
    Ok(if negative { -value } else { value })
}

/// A kind of fixed-point amount.
struct Amount {
    /// Decimals kept: the stored integer is the amount times 10^places.
    places: usize,
    /// Whether Kubernetes milli strings (`"2500m"`) are accepted.
    milli_suffix: bool,
    plural: &'static str,
    example: &'static str,
}

/// GPUs (cores for `cpu`), stored in milli-units.
const QUANTITY: Amount = Amount {
    places: 3,
    milli_suffix: true,
    plural: "quotas",
    example: "a number of GPUs (cores for cpu) with at most 3 decimals, such as 2.5, or milli-units such as \"2500m\"",
};
/// Currency per GPU-hour (core-hour for `cpu`), stored in micro-units.
const PRICE: Amount = Amount {
    places: 6,
    milli_suffix: false,
    plural: "prices",
    example: "a price per GPU-hour (core-hour for cpu) with at most 6 decimals, such as 2.40",
};
/// GPU-hours, stored in milli-units.
const HOURS: Amount = Amount {
    places: 3,
    milli_suffix: false,
    plural: "budgets",
    example: "a number of GPU-hours with at most 3 decimals, such as 5000",
};

/// A non-negative fixed-point amount, scaled to an integer. `what` names it in messages.
fn amount(v: &Val, what: &str, kind: &Amount) -> One<u64> {
    let s = v.s();
    let parsed = match s.strip_suffix('m') {
        Some(milli) if kind.milli_suffix => decimal(milli, 0),
        _ => decimal(s, kind.places),
    };
    let why = match parsed.map(u64::try_from) {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(_)) if s.starts_with('-') => {
            return refuse(&v.at, format!("{what} is {s}; {} cannot be negative, use 0 or more", kind.plural))
        }
        Ok(Err(_)) => "too large",
        Err(why) => why,
    };
    refuse(&v.at, format!("{what} is {s:?}: {why}; write {}", kind.example))
}

/// `value / 10^places` as the shortest plain decimal: (2500, 3) -> "2.5".
fn fixed_text(value: u64, places: u32) -> String {
    let scale = 10u64.pow(places);
    let frac = format!("{:0width$}", value % scale, width = places as usize);
    match frac.trim_end_matches('0') {
        "" => format!("{}", value / scale),
        frac => format!("{}.{frac}", value / scale),
    }
}

/// Milli-units as a plain number of GPUs or cores, as quotas are written: 2500 -> "2.5".
pub fn milli_text(milli: Milli) -> String {
    fixed_text(milli, 3)
}

/// Micro-units as a plain number, as prices are written: 2_400_000 -> "2.4".
pub fn micro_text(micros: u64) -> String {
    fixed_text(micros, 6)
}

fn int32(v: &Val) -> One<i32> {
    let s = v.s();
    match decimal(s, 0).map(i32::try_from) {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => refuse(
            &v.at,
            format!("{s} is outside the 32-bit range {}..={}; use a smaller value", i32::MIN, i32::MAX),
        ),
        Err(_) => refuse(&v.at, format!("{s:?} is not a whole number; write one such as 500")),
    }
}

fn weight(v: &Val) -> One<f64> {
    let s = v.s();
    match s.parse::<f64>() {
        Ok(w) if w.is_finite() && w > 0.0 => Ok(w),
        _ => {
            let why = "it must be a number greater than 0 (shares of borrowed capacity follow it), e.g. 1";
            refuse(&v.at, format!("weight is {s}; {why}"))
        }
    }
}

/// How a duration is written, for messages.
pub const DURATION_HOW: &str =
    "write whole seconds or a whole number with s, m, h or d, such as 90s, 5m, 2h, 1d";

/// Whole seconds, or a whole number with a unit: `90s`, `5m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Option<Seconds> {
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let scale = "smhd".find(unit).and_then(|i| [1, 60, 3600, 86400].get(i).copied())?;
    number.parse::<u32>().ok().map(|n| Seconds::from(n) * scale)
}

fn duration(v: &Val) -> One<Seconds> {
    match parse_duration(v.s()) {
        Some(d) => Ok(d),
        None => refuse(&v.at, format!("{:?} is not a duration; {DURATION_HOW}", v.s())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_text_is_the_shortest_decimal() {
        assert_eq!(milli_text(2500), "2.5");
        assert_eq!(milli_text(16_000), "16");
        assert_eq!(milli_text(125), "0.125");
        assert_eq!(milli_text(0), "0");
        assert_eq!(micro_text(2_400_000), "2.4");
        assert_eq!(micro_text(1), "0.000001");
        assert_eq!(micro_text(u64::MAX), "18446744073709.551615");
        for v in [0, 1, 999, 1000, 123_456_789] {
            assert_eq!(decimal(&milli_text(v), 3), Ok(i128::from(v)));
            assert_eq!(decimal(&micro_text(v), 6), Ok(i128::from(v)));
        }
    }
}
