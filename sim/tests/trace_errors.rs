//! Trace CSV errors: every problem names the file, the line and what is wrong.

use gantry_core::ModelSet;
use gantry_sim::trace::{parse_nodes, parse_pods, Trace, TraceError};

const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model
n1,64000,262144,2,V100
n2,96000,393216,8,T4
n3,32000,131072,0,
";

const PODS: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec
p1,4000,8192,1,500,
p2,8000,16384,2,1000,V100|T4
p3,2000,4096,0,0,
";

/// Asserts `got` is an error at `file:line` whose problem contains every one of `words`.
fn expect(
    case: &str,
    got: Result<impl std::fmt::Debug, TraceError>,
    file: &str,
    line: Option<u64>,
    words: &[&str],
) {
    let e = got.expect_err(case);
    assert_eq!((e.file.as_str(), e.line), (file, line), "{case}: {e}");
    for w in words {
        assert!(e.problem.contains(w), "{case}: problem {:?} does not mention {w:?}", e.problem);
    }
    let shown = match line {
        Some(l) => format!("{file}:{l}: {}", e.problem),
        None => format!("{file}: {}", e.problem),
    };
    assert_eq!(e.to_string(), shown, "{case}");
}

#[test]
fn node_list_errors() {
    let cases: &[(&str, &str, Option<u64>, &[&str])] = &[
        ("empty file", "", None, &["empty", "sn,cpu_milli,memory_mib,gpu,model"]),
        ("blank file", " \n\n", None, &["empty"]),
        ("header only", "sn,cpu_milli,memory_mib,gpu,model\n", None, &["no nodes"]),
        (
            "missing column",
            "sn,cpu_milli,memory_mib,gpu\nn1,1000,1024,1\n",
            Some(1),
            &["missing column `model`", "sn,cpu_milli,memory_mib,gpu"],
        ),
        ("missing name column", "host,cpu_milli,memory_mib,gpu,model\n", Some(1), &["missing column `sn`"]),
        (
            "too few fields",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,1000,1024,1,V100\nn2,1000,1024,1\n",
            Some(3),
            &["malformed row", "4 fields", "header has 5"],
        ),
        (
            "too many fields",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,1000,1024,1,V100,extra\n",
            Some(2),
            &["malformed row", "6 fields"],
        ),
        (
            "negative cpu",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,-4000,1024,1,V100\n",
            Some(2),
            &["cpu_milli is -4000", "negative"],
        ),
        (
            "non-numeric memory",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,4000,lots,1,V100\n",
            Some(2),
            &["memory_mib is \"lots\"", "whole number"],
        ),
        (
            "fractional gpu",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,4000,1024,1.5,V100\n",
            Some(2),
            &["gpu is \"1.5\"", "whole number"],
        ),
        (
            "empty cpu",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,,1024,1,V100\n",
            Some(2),
            &["cpu_milli is empty"],
        ),
        (
            "cpu beyond u32",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,5000000000,1024,1,V100\n",
            Some(2),
            &["cpu_milli is 5000000000", "too large"],
        ),
        (
            "GPUs but no model",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,4000,1024,1,V100\nn2,4000,1024,2,\n",
            Some(3),
            &["n2 has 2 GPUs but no model"],
        ),
        (
            "too many GPUs",
            "sn,cpu_milli,memory_mib,gpu,model\nn1,4000,1024,65,V100\n",
            Some(2),
            &["gpu is 65", "at most 64"],
        ),
        (
            "empty name",
            "sn,cpu_milli,memory_mib,gpu,model\n,4000,1024,1,V100\n",
            Some(2),
            &["node name is empty"],
        ),
    ];
    for (case, text, line, words) in cases {
        expect(case, parse_nodes("nodes.csv", text), "nodes.csv", *line, words);
        // Trace::parse reports node problems before looking at the pods.
        expect(case, Trace::parse("nodes.csv", text, "pods.csv", PODS), "nodes.csv", *line, words);
    }
}

/// An error must point at the line where the bad row is, as an editor numbers it: blank lines
/// (skipped, but still lines of the file) and CRLF line endings (spreadsheet exports) included.
#[test]
fn line_numbers_match_the_file() {
    let h = "sn,cpu_milli,memory_mib,gpu,model\n";
    let crlf = |s: String| s.replace('\n', "\r\n");
    let cases: &[(&str, String, u64, &[&str])] = &[
        ("LF", format!("{h}n1,4000,1024,1,V100\nn2,-1,1024,1,V100\n"), 3, &["cpu_milli is -1"]),
        ("CRLF", crlf(format!("{h}n1,4000,1024,1,V100\nn2,-1,1024,1,V100\n")), 3, &["cpu_milli is -1"]),
        ("CRLF malformed row", crlf(format!("{h}n1,4000,1024,1,V100\nn2,4000\n")), 3, &["malformed row"]),
        (
            "second row after a blank line",
            format!("{h}n1,4000,1024,1,V100\n\nn2,4000,1024,1,V100\nn3,x,1024,1,V100\n"),
            5,
            &["\"x\""],
        ),
        (
            "first row after a blank line",
            format!("{h}n1,4000,1024,1,V100\n\nn2,x,1024,1,V100\n"),
            4,
            &["\"x\""],
        ),
        (
            "malformed row after two blank lines",
            format!("{h}n1,4000,1024,1,V100\n\n\nn2,4000\n"),
            5,
            &["malformed row"],
        ),
    ];
    let mut wrong = Vec::new();
    for (case, text, line, words) in cases {
        let e = parse_nodes("nodes.csv", text).expect_err(case);
        assert!(words.iter().all(|w| e.problem.contains(w)), "{case}: {e}");
        if e.line != Some(*line) {
            wrong.push(format!("{case}: reported line {:?}, the row is on line {line}", e.line));
        }
    }
    assert!(wrong.is_empty(), "wrong line numbers:\n{}", wrong.join("\n"));
}

#[test]
fn too_many_gpu_models() {
    let mut text = String::from("sn,cpu_milli,memory_mib,gpu,model\n");
    for i in 0..65 {
        text += &format!("n{i},1000,1024,1,M{i}\n");
    }
    // The 65th model is on the 66th line.
    expect("65 models", parse_nodes("nodes.csv", &text), "nodes.csv", Some(66), &["\"M64\"", "at most 64"]);
}

#[test]
fn pod_list_errors() {
    let h = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";
    let cases: &[(&str, String, Option<u64>, &[&str])] = &[
        (
            "empty file",
            String::new(),
            None,
            &["empty", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec"],
        ),
        ("header only", h.into(), None, &["no pods"]),
        (
            "missing column",
            "name,cpu_milli,memory_mib,gpu_milli\np1,1000,1024,500\n".into(),
            Some(1),
            &["missing column `num_gpu`"],
        ),
        (
            "wrong field count",
            format!("{h}p1,1000,1024,1,500,\np2,1000,1024,1\n"),
            Some(3),
            &["malformed row", "4 fields", "header has 6"],
        ),
        ("negative memory", format!("{h}p1,1000,-5,1,500,\n"), Some(2), &["memory_mib is -5", "negative"]),
        ("non-numeric gpu_milli", format!("{h}p1,1000,1024,1,half,\n"), Some(2), &["gpu_milli is \"half\""]),
        (
            "gpu_milli over 1000",
            format!("{h}p1,1000,1024,1,500,\np2,1000,1024,1,1500,\n"),
            Some(3),
            &["gpu_milli is 1500", "at most 1000", "num_gpu"],
        ),
        (
            "unknown model",
            format!("{h}p1,1000,1024,1,500,V100|H100\n"),
            Some(2),
            &["\"H100\"", "no node has", "V100, T4"],
        ),
        (
            "milli without GPUs",
            format!("{h}p1,1000,1024,0,500,\n"),
            Some(2),
            &["gpu_milli is 500 but num_gpu is 0"],
        ),
        (
            "GPUs without milli",
            format!("{h}p1,1000,1024,2,0,\n"),
            Some(2),
            &["num_gpu is 2 but gpu_milli is 0"],
        ),
        (
            "fraction of several GPUs",
            format!("{h}p1,1000,1024,2,500,\n"),
            Some(2),
            &["num_gpu is 2 with gpu_milli 500", "single GPU"],
        ),
        ("empty name", format!("{h},1000,1024,1,500,\n"), Some(2), &["pod name is empty"]),
    ];
    let (models, _) = parse_nodes("nodes.csv", NODES).unwrap();
    for (case, text, line, words) in cases {
        expect(case, parse_pods("pods.csv", text, &models), "pods.csv", *line, words);
        expect(case, Trace::parse("nodes.csv", NODES, "pods.csv", text), "pods.csv", *line, words);
    }
}

#[test]
fn load_names_a_missing_file() {
    let missing = std::env::temp_dir().join(format!("gantry-no-such-{}.csv", std::process::id()));
    let e = Trace::load(&missing, &missing).unwrap_err();
    assert_eq!((e.file, e.line), (missing.display().to_string(), None));
    assert!(e.problem.contains("cannot read"), "{}", e.problem);
}

#[test]
fn good_files_parse() {
    let t = Trace::parse("x/nodes.csv", NODES, "x/openb_pod_list_small.csv", PODS).unwrap();
    assert_eq!(t.name, "small");
    assert_eq!(t.models.names(), ["V100", "T4"]);
    assert_eq!(t.nodes.len(), 3);
    assert_eq!(
        (t.nodes[1].cpu_capacity, t.nodes[1].gpu_count(), t.nodes[1].model),
        (96_000, 8, t.models.get("T4"))
    );
    assert_eq!(t.nodes[2].model, None);
    assert_eq!(t.gpu_capacity(), 10_000);
    let r: Vec<_> = t.pods.iter().map(|p| (p.name.as_str(), p.request)).collect();
    assert_eq!(r[0].1, gantry_core::PodRequest::shared_gpu(4000, 8192, 500));
    assert_eq!(r[1].1.allowed_models, Some(ModelSet(0b11)));
    assert_eq!(r[2].1, gantry_core::PodRequest::cpu_only(2000, 4096));

    // Header aliases, case, a byte-order mark, spaces, extra columns, and no gpu_spec column.
    let nodes = "\u{feff}NAME, CPU_MILLI ,memory_mib,num_gpu,gpu_model,zone\n n1 , 1000 ,1024, 2 ,A10,z\n";
    let pods = "pod,cpu_milli,memory_mib,num_gpu,gpu_milli,qos\nq,500,64,2,1000,LS\n";
    let t = Trace::parse("nodes.csv", nodes, "pods.csv", pods).unwrap();
    assert_eq!((t.nodes[0].name.as_str(), t.nodes[0].cpu_capacity, t.nodes[0].gpu_count()), ("n1", 1000, 2));
    assert_eq!(t.pods[0].request, gantry_core::PodRequest::whole_gpus(500, 64, 2));
    // A gpu_spec on a CPU-only pod is ignored.
    let pods = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\nq,500,64,0,0,Nope\n";
    assert_eq!(
        Trace::parse("nodes.csv", nodes, "pods.csv", pods).unwrap().pods[0].request.allowed_models,
        None
    );
}

#[test]
fn bundled_trace_matches_its_description() {
    let t = gantry_sim::bundled::default_trace().unwrap();
    assert_eq!(t.name, "default");
    assert_eq!(t.nodes.len(), 1213);
    assert_eq!(t.gpu_capacity(), 6212 * 1000);
    assert_eq!(t.nodes.iter().map(|n| n.cpu_capacity).max(), Some(128_000));
    let by_gpus = |k: u32| t.nodes.iter().filter(|n| n.gpu_count() == k).count();
    assert_eq!([by_gpus(8), by_gpus(4), by_gpus(2), by_gpus(1)], [617, 54, 518, 24]);
    let mut by_model: Vec<(&str, usize)> = t
        .models
        .names()
        .iter()
        .map(|m| (m.as_str(), t.nodes.iter().filter(|n| n.model == t.models.get(m)).count()))
        .collect();
    by_model.sort_by_key(|m| std::cmp::Reverse(m.1));
    assert_eq!(
        by_model,
        [("G2", 549), ("T4", 404), ("P100", 134), ("V100M16", 55), ("G3", 39), ("V100M32", 30), ("A10", 2)]
    );

    assert_eq!(t.pods.len(), 8152);
    let count =
        |f: &dyn Fn(&gantry_core::PodRequest) -> bool| t.pods.iter().filter(|p| f(&p.request)).count();
    assert_eq!(count(&|r| !r.wants_gpu()), 1088);
    assert_eq!(count(&|r| r.is_sharing()), 3078);
    let whole = |k: u32| count(&|r| r.gpu_milli == 1000 && r.gpu_count == k);
    assert_eq!([whole(1), whole(2), whole(4), whole(8)], [3911, 16, 15, 44]);
    // 97.98 % of cluster GPU capacity.
    let total: u64 = t.pods.iter().map(|p| p.request.gpu_total()).sum();
    assert_eq!((total as f64 * 10_000.0 / t.gpu_capacity() as f64).round(), 9798.0);
}
