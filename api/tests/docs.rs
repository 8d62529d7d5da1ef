//! The user documentation of gang sizes (`docs/gangs.md`) names every framework Gantry reads.

#[test]
fn the_gang_table_names_every_framework_read() {
    let doc = include_str!("../../docs/gangs.md");
    for f in gantry_api::gang::FRAMEWORKS {
        let gv = format!("`{}/{}`", f.group, f.versions[0]);
        assert!(doc.contains(&gv), "docs/gangs.md does not name {} ({gv})", f.kind);
        assert!(doc.contains(f.kind), "docs/gangs.md does not name {}", f.kind);
    }
}
