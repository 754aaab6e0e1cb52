//! `PolicySet::evaluate` runs for every new stream and for every live connection on each policy
//! change, so it must not allocate. A counting global allocator checks that, per thread.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use ferrule_identity::SpiffeId;
use ferrule_policy::{PolicySet, Request, Verdict, Workload, parse_documents};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting only touches a
// const-initialized thread-local `Cell`, which neither allocates nor panics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`, via `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = f();
    (value, ALLOCATIONS.with(Cell::get) - before)
}

#[test]
fn evaluation_does_not_allocate() {
    let text = include_str!("../examples/shop.yaml");
    let mut policies = parse_documents(text, "shop.yaml").unwrap();
    let mesh_wide = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: \
                     {name: audit-nodes}\nspec:\n  action: AUDIT\n  rules:\n    - from:\n        \
                     - identity: 'spiffe://example.org/node/*'\n";
    policies.extend(parse_documents(mesh_wide, "mesh.yaml").unwrap());
    let set = PolicySet::new(policies);

    let labels: BTreeMap<String, String> = [("app.kubernetes.io/name", "api"), ("tier", "backend")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let api_id = SpiffeId::parse("spiffe://example.org/ns/shop/sa/api").unwrap();
    let api = Workload {
        spiffe_id: &api_id,
        namespace: "shop",
        service_account: "api",
        labels: &labels,
    };
    let cases = [
        (
            "spiffe://example.org/ns/web/sa/frontend",
            8080,
            Verdict::Allow,
        ),
        (
            "spiffe://example.org/ns/batch/sa/export",
            9050,
            Verdict::Allow,
        ),
        ("spiffe://example.org/ns/legacy/sa/old", 8080, Verdict::Deny),
        ("spiffe://example.org/ns/web/sa/frontend", 80, Verdict::Deny),
        ("spiffe://example.org/node/n1", 8080, Verdict::Deny),
        (
            "spiffe://partner.org/ns/checkout/sa/pay",
            443,
            Verdict::Deny,
        ),
    ];
    for (source, port, expected) in cases {
        let source = SpiffeId::parse(source).unwrap();
        let request = Request {
            source: &source,
            destination: api,
            port,
        };
        let (decision, allocations) = allocations_during(|| set.evaluate(&request));
        assert_eq!(
            decision.verdict, expected,
            "{source} port {port}: {decision}"
        );
        assert_eq!(
            allocations, 0,
            "evaluating {source} port {port} ({decision}) allocated {allocations} times"
        );
        let (selected, allocations) = allocations_during(|| set.allow_selects(&api));
        assert!(selected);
        assert_eq!(allocations, 0, "selects() allocated {allocations} times");
    }
    // No ALLOW policy selects cart: the namespace's defaultAction decides, without allocating.
    let no_labels = BTreeMap::new();
    let cart_id = SpiffeId::parse("spiffe://example.org/ns/shop/sa/cart").unwrap();
    let cart = Workload {
        spiffe_id: &cart_id,
        namespace: "shop",
        service_account: "cart",
        labels: &no_labels,
    };
    let request = Request {
        source: &api_id,
        destination: cart,
        port: 80,
    };
    let (decision, allocations) = allocations_during(|| set.evaluate(&request));
    assert_eq!(decision.cause.rule_label(), "shop/zero-trust#default");
    assert_eq!(
        allocations, 0,
        "the default action allocated {allocations} times"
    );
}
