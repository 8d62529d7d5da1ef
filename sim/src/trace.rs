//! Reading openb-format traces: a node list and a pod list, as CSV.
//!
//! Nodes: `sn,cpu_milli,memory_mib,gpu,model` (the first column may also be called `name`).
//! Pods: `name,cpu_milli,memory_mib,num_gpu,gpu_milli` plus an optional `gpu_spec` (allowed GPU
//! models separated by `|`); other columns (`qos`, times) are ignored. Every problem is reported
//! with the file, the line and what to fix.

use gantry_core::model::{ModelCatalog, ModelError, Node, PodRequest, GPU_MILLI};
use std::path::Path;

/// A problem in a trace file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{} {problem}", line.map_or_else(String::new, |l| format!("{l}:")))]
pub struct TraceError {
    pub file: String,
    /// 1-based line number, when the problem is on one line.
    pub line: Option<u64>,
    pub problem: String,
}

/// One pod of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TracePod {
    pub name: String,
    pub request: PodRequest,
    /// The `qos` column (`LS`, `BE`, `Burstable`, `Guaranteed` in openb); empty when absent.
    pub qos: String,
    /// `creation_time` and `deletion_time` in seconds, when the file has them.
    pub created: Option<u64>,
    pub deleted: Option<u64>,
}

/// A cluster and the pods to replay on it.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Short name for reports (the pod file's stem, without `openb_pod_list_`).
    pub name: String,
    pub nodes_source: String,
    pub pods_source: String,
    pub models: ModelCatalog,
    pub nodes: Vec<Node>,
    pub pods: Vec<TracePod>,
}

impl Trace {
    /// Reads both files from disk.
    pub fn load(nodes: &Path, pods: &Path) -> Result<Trace, TraceError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| TraceError {
                file: p.display().to_string(),
                line: None,
                problem: format!("cannot read: {e}"),
            })
        };
        let (nt, pt) = (read(nodes)?, read(pods)?);
        Trace::parse(&nodes.display().to_string(), &nt, &pods.display().to_string(), &pt)
    }

    /// Parses a node list and a pod list already in memory; the names are used in errors.
    pub fn parse(
        nodes_name: &str,
        nodes_csv: &str,
        pods_name: &str,
        pods_csv: &str,
    ) -> Result<Trace, TraceError> {
        let (models, nodes) = parse_nodes(nodes_name, nodes_csv)?;
        let pods = parse_pods(pods_name, pods_csv, &models)?;
        let stem =
            Path::new(pods_name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = stem.strip_prefix("openb_pod_list_").unwrap_or(&stem).to_string();
        Ok(Trace {
            name,
            nodes_source: nodes_name.into(),
            pods_source: pods_name.into(),
            models,
            nodes,
            pods,
        })
    }

    /// Total GPU capacity in milli-GPU.
    pub fn gpu_capacity(&self) -> u64 {
        self.nodes.iter().map(|n| n.gpu_capacity() as u64).sum()
    }
}

/// A CSV file with named columns, read record by record with line numbers.
struct Table<'a> {
    file: &'a str,
    reader: csv::Reader<&'a [u8]>,
    header: Vec<String>,
    /// Byte offsets of every `\n`, to turn byte positions into line numbers (the csv crate's own
    /// line count is off after CRLF endings and blank lines).
    newlines: Vec<usize>,
    text: &'a [u8],
}

impl<'a> Table<'a> {
    fn open(file: &'a str, text: &'a str, what: &str, example: &str) -> Result<Self, TraceError> {
        let err = |line, problem: String| TraceError { file: file.into(), line, problem };
        if text.trim().is_empty() {
            return Err(err(
                None,
                format!("the file is empty; a {what} list starts with the header `{example}`"),
            ));
        }
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| err(Some(1), format!("unreadable header: {e}")))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
            .collect();
        let newlines = text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i).collect();
        Ok(Table { file, reader, header, newlines, text: text.as_bytes() })
    }

    /// The 1-based line of the record the csv reader places at byte `offset`. The reader may place
    /// a record at the line break or blank lines before it, so those are skipped first.
    fn line_of(newlines: &[usize], text: &[u8], offset: u64) -> u64 {
        let mut at = offset as usize;
        while at < text.len() && matches!(text[at], b'\r' | b'\n') {
            at += 1;
        }
        newlines.partition_point(|&nl| nl < at) as u64 + 1
    }

    fn column(&self, names: &[&str], example: &str) -> Result<usize, TraceError> {
        self.optional(names).ok_or_else(|| TraceError {
            file: self.file.into(),
            line: Some(1),
            problem: format!(
                "missing column `{}` (header has: {}); expected a header like `{example}`",
                names[0],
                self.header.join(",")
            ),
        })
    }

    fn optional(&self, names: &[&str]) -> Option<usize> {
        self.header.iter().position(|h| names.contains(&h.as_str()))
    }

    /// Calls `each` with every record and its line number.
    fn rows(
        &mut self,
        mut each: impl FnMut(u64, &csv::StringRecord) -> Result<(), TraceError>,
    ) -> Result<usize, TraceError> {
        let mut n = 0;
        let (newlines, text) = (&self.newlines, self.text);
        for rec in self.reader.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map(|p| Self::line_of(newlines, text, p.byte()));
                let problem = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("malformed row: {len} fields where the header has {expected_len}")
                    }
                    _ => format!("malformed row: {e}"),
                };
                TraceError { file: self.file.into(), line, problem }
            })?;
            let line = rec.position().map_or(0, |p| Self::line_of(newlines, text, p.byte()));
            if rec.iter().all(|f| f.is_empty()) {
                continue;
            }
            each(line, &rec)?;
            n += 1;
        }
        Ok(n)
    }
}

struct Row<'r> {
    file: &'r str,
    line: u64,
    rec: &'r csv::StringRecord,
    header: &'r [String],
}

impl Row<'_> {
    fn err(&self, problem: String) -> TraceError {
        TraceError { file: self.file.into(), line: Some(self.line), problem }
    }
    fn text(&self, col: usize) -> &str {
        self.rec.get(col).unwrap_or("")
    }
    fn number(&self, col: usize) -> Result<u64, TraceError> {
        let name = &self.header[col];
        let v = self.text(col);
        if v.is_empty() {
            return Err(self.err(format!("{name} is empty; it must be a whole number, 0 or more")));
        }
        match v.parse::<u64>() {
            Ok(n) => Ok(n),
            Err(_) if v.starts_with('-') && v[1..].parse::<f64>().is_ok() => {
                Err(self.err(format!("{name} is {v}; it cannot be negative")))
            }
            Err(_) => Err(self.err(format!("{name} is {v:?}; it must be a whole number, 0 or more"))),
        }
    }
    fn number_u32(&self, col: usize) -> Result<u32, TraceError> {
        let n = self.number(col)?;
        u32::try_from(n)
            .map_err(|_| self.err(format!("{} is {n}, too large (at most {})", self.header[col], u32::MAX)))
    }
}

const NODE_HEADER: &str = "sn,cpu_milli,memory_mib,gpu,model";
const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec";

/// Parses a node list.
pub fn parse_nodes(file: &str, text: &str) -> Result<(ModelCatalog, Vec<Node>), TraceError> {
    let mut t = Table::open(file, text, "node", NODE_HEADER)?;
    let c_name = t.column(&["sn", "name", "node"], NODE_HEADER)?;
    let c_cpu = t.column(&["cpu_milli"], NODE_HEADER)?;
    let c_mem = t.column(&["memory_mib"], NODE_HEADER)?;
    let c_gpu = t.column(&["gpu", "num_gpu"], NODE_HEADER)?;
    let c_model = t.column(&["model", "gpu_model"], NODE_HEADER)?;
    let header = t.header.clone();
    let mut models = ModelCatalog::default();
    let mut nodes = Vec::new();
    let count = t.rows(|line, rec| {
        let row = Row { file, line, rec, header: &header };
        let name = row.text(c_name);
        if name.is_empty() {
            return Err(row.err("node name is empty".into()));
        }
        let cpu = row.number_u32(c_cpu)?;
        let mem = row.number(c_mem)?;
        let gpus = row.number_u32(c_gpu)?;
        if gpus > 64 {
            return Err(row.err(format!("gpu is {gpus}; a node may have at most 64 GPUs")));
        }
        let model_name = row.text(c_model);
        let model = match (gpus, model_name.is_empty()) {
            (0, _) => None,
            (_, true) => {
                return Err(
                    row.err(format!("node {name} has {gpus} GPUs but no model; fill the model column"))
                )
            }
            (_, false) => Some(models.intern(model_name).map_err(|e: ModelError| row.err(e.to_string()))?),
        };
        nodes.push(Node::new(name, cpu, mem, gpus, model));
        Ok(())
    })?;
    if count == 0 {
        return Err(TraceError {
            file: file.into(),
            line: None,
            problem: "no nodes: the file has a header but no rows".into(),
        });
    }
    Ok((models, nodes))
}

/// Parses a pod list; GPU models in `gpu_spec` must be models of the cluster.
pub fn parse_pods(file: &str, text: &str, models: &ModelCatalog) -> Result<Vec<TracePod>, TraceError> {
    let mut t = Table::open(file, text, "pod", POD_HEADER)?;
    let c_name = t.column(&["name", "pod"], POD_HEADER)?;
    let c_cpu = t.column(&["cpu_milli"], POD_HEADER)?;
    let c_mem = t.column(&["memory_mib"], POD_HEADER)?;
    let c_num = t.column(&["num_gpu"], POD_HEADER)?;
    let c_milli = t.column(&["gpu_milli"], POD_HEADER)?;
    let c_spec = t.optional(&["gpu_spec"]);
    let c_qos = t.optional(&["qos"]);
    let c_created = t.optional(&["creation_time"]);
    let c_deleted = t.optional(&["deletion_time"]);
    let header = t.header.clone();
    let mut pods = Vec::new();
    let count = t.rows(|line, rec| {
        let row = Row { file, line, rec, header: &header };
        let name = row.text(c_name);
        if name.is_empty() {
            return Err(row.err("pod name is empty".into()));
        }
        let cpu = row.number_u32(c_cpu)?;
        let mem = row.number(c_mem)?;
        let num = row.number_u32(c_num)?;
        let milli = row.number_u32(c_milli)?;
        if milli > GPU_MILLI {
            return Err(row.err(format!("gpu_milli is {milli}; it is per GPU, at most {GPU_MILLI} (use num_gpu for more GPUs)")));
        }
        let (num, milli) = match (num, milli) {
            (0, 0) => (0, 0),
            (0, m) => return Err(row.err(format!("gpu_milli is {m} but num_gpu is 0; set num_gpu to 1 to share a GPU"))),
            (n, 0) => return Err(row.err(format!("num_gpu is {n} but gpu_milli is 0; set gpu_milli to 1000 for whole GPUs"))),
            (n, m) if n > 1 && m < GPU_MILLI => {
                return Err(row.err(format!("num_gpu is {n} with gpu_milli {m}; only a single GPU can be shared")))
            }
            nm => nm,
        };
        let mut request = PodRequest { cpu_milli: cpu, memory_mib: mem, gpu_count: num, gpu_milli: milli, allowed_models: None };
        let spec = c_spec.map_or("", |c| row.text(c));
        if !spec.is_empty() && num > 0 {
            let mut set = gantry_core::ModelSet::default();
            for part in spec.split('|').map(str::trim).filter(|p| !p.is_empty()) {
                match models.get(part) {
                    Some(id) => set.insert(id),
                    None => {
                        return Err(row.err(format!(
                            "gpu_spec names GPU model {part:?}, which no node has (models in the node list: {}); fix the name or add such nodes",
                            models.names().join(", ")
                        )))
                    }
                }
            }
            if !set.is_empty() {
                request.allowed_models = Some(set);
            }
        }
        let time = |c: Option<usize>| -> Result<Option<u64>, TraceError> {
            match c {
                Some(c) if !row.text(c).is_empty() => row.number(c).map(Some),
                _ => Ok(None),
            }
        };
        let (created, deleted) = (time(c_created)?, time(c_deleted)?);
        if let (Some(c), Some(d)) = (created, deleted) {
            if d < c {
                return Err(row.err(format!("deletion_time {d} is before creation_time {c}; swap them or fix the row")));
            }
        }
        let qos = c_qos.map_or("", |c| row.text(c)).to_string();
        pods.push(TracePod { name: name.to_string(), request, qos, created, deleted });
        Ok(())
    })?;
    if count == 0 {
        return Err(TraceError {
            file: file.into(),
            line: None,
            problem: "no pods: the file has a header but no rows".into(),
        });
    }
    Ok(pods)
}
