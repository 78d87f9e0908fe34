//! The plan index against a plan real Terraform wrote (`test_data/real/terraform_data`:
//! `terraform show -json` of `main.tf` by Terraform 1.11.4, built-in `terraform_data` only).
//! It pins how configuration references are resolved in the shapes Terraform really emits:
//! `x.b[count.index]` (listed as `x.b` + `count.index`), `x.b[1].output` (listed as
//! `x.b[1].output`, `x.b[1]` and `x.b`), `for_each` keys and module-local references.

use std::path::Path;

use ferry_policy::PlanInput;

fn plan() -> PlanInput {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/real/terraform_data/plan.json");
    PlanInput::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn refs(plan: &PlanInput, address: &str) -> Vec<String> {
    let res = plan
        .by_address(address)
        .unwrap_or_else(|| panic!("no {address}"));
    plan.refs(res, &["input"])
        .into_iter()
        .map(|i| plan.resource(i).address.clone())
        .collect()
}

#[test]
fn references_resolve_to_the_right_instances() {
    let plan = plan();
    assert_eq!(plan.format_version(), "1.2");
    assert_eq!(plan.resources().len(), 10);
    assert_eq!(
        refs(&plan, "terraform_data.enc[0]"),
        ["terraform_data.bucket[0]"]
    );
    assert_eq!(
        refs(&plan, "terraform_data.enc[1]"),
        ["terraform_data.bucket[1]"]
    );
    assert_eq!(
        refs(&plan, "terraform_data.single"),
        ["terraform_data.bucket[1]"]
    );
    assert_eq!(
        refs(&plan, "terraform_data.pick"),
        ["terraform_data.keyed[\"b\"]"]
    );
    assert_eq!(
        refs(&plan, "module.m.terraform_data.y"),
        ["module.m.terraform_data.x"]
    );
    assert!(refs(&plan, "terraform_data.bucket[0]").is_empty());
    let enc = plan.by_address("terraform_data.enc[0]").unwrap();
    assert!(enc.unknown(&["input"]));
    assert!(enc.action.is_change());
}
