//! The standard traits of `Gc<T>`: formatting, comparison and hashing delegate
//! to the value (as `Rc`'s do), `{:p}` prints the value's address, `Default`,
//! `From`, `Clone`, `AsRef`, `Borrow`, identity and counts, and the size of the
//! handle. That `Gc` and `Weak` are `!Send` and `!Sync` is checked by the
//! compile-fail cases of `tests/handles_ui.rs`.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::mem::size_of;

use gencc::{Gc, Trace, Tracer, Weak};

fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// A tracked type with value semantics for the comparison traits.
#[derive(Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    rank: u32,
    name: String,
}

// SAFETY: reports nothing (rule 2 allows it); `NEEDS_TRACE` is left `true`
// so that `Gc<Key>` is a tracked object, the other header layout.
unsafe impl Trace for Key {
    fn trace(&self, _: &mut Tracer<'_>) {}
}

fn key(rank: u32, name: &str) -> Gc<Key> {
    Gc::new(Key {
        rank,
        name: name.to_owned(),
    })
}

#[test]
fn debug_and_display_delegate_to_the_value() {
    assert_eq!(format!("{:?}", Gc::new(5)), "5");
    assert_eq!(format!("{:?}", Gc::new(String::from("hi"))), "\"hi\"");
    assert_eq!(format!("{}", Gc::new(String::from("hi"))), "hi");
    assert_eq!(format!("{:>6.2}", Gc::new(1.5f64)), "  1.50");
    assert_eq!(format!("{:#x}", *Gc::new(255u32)), "0xff");
    let k = key(1, "a");
    assert_eq!(format!("{k:?}"), "Key { rank: 1, name: \"a\" }");
    assert_eq!(format!("{k:#?}"), format!("{:#?}", *k));
    let nested = Gc::new(vec![Gc::new(1), Gc::new(2)]);
    assert_eq!(format!("{nested:?}"), "[1, 2]");
}

#[test]
fn equality_and_ordering_compare_values_not_addresses() {
    let (a, b, c) = (key(1, "a"), key(1, "a"), key(2, "a"));
    assert!(!Gc::ptr_eq(&a, &b));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a < c && c > b && a <= b && a >= b);
    assert_eq!(a.cmp(&c), Ordering::Less);
    assert_eq!(c.cmp(&a), Ordering::Greater);
    assert_eq!(a.cmp(&b), Ordering::Equal);
    assert_eq!(a.partial_cmp(&c), Some(Ordering::Less));
    // Delegation keeps `PartialOrd`'s partiality.
    let nan = Gc::new(f64::NAN);
    assert_ne!(nan, nan.clone());
    assert_eq!(nan.partial_cmp(&Gc::new(1.0)), None);
    assert_eq!(
        Gc::new(1.0).partial_cmp(&Gc::new(2.0)),
        Some(Ordering::Less)
    );
    assert_eq!(Gc::new(3).max(Gc::new(7)), Gc::new(7));
}

#[test]
fn hash_is_the_value_hash() {
    assert_eq!(hash_of(&Gc::new(7u64)), hash_of(&7u64));
    assert_eq!(hash_of(&key(3, "x")), hash_of(&*key(3, "x")));
    assert_eq!(hash_of(&Gc::new(String::from("s"))), hash_of("s"));
}

#[test]
fn gc_in_hash_and_btree_sets() {
    let set: HashSet<Gc<Key>> = [key(1, "a"), key(1, "a"), key(2, "b")]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 2);
    // `Borrow<T>` lets a set of handles be searched by value.
    assert!(set.contains(&Key {
        rank: 2,
        name: "b".into()
    }));
    assert!(!set.contains(&Key {
        rank: 3,
        name: "b".into()
    }));

    let strings: HashSet<Gc<String>> = ["x", "y", "x"]
        .iter()
        .map(|s| Gc::new(s.to_string()))
        .collect();
    assert_eq!(strings.len(), 2);
    assert!(strings.contains(&String::from("y")));

    let tree: BTreeSet<Gc<Key>> = [key(3, "c"), key(1, "z"), key(2, "a"), key(1, "a")]
        .into_iter()
        .collect();
    let order: Vec<(u32, &str)> = tree.iter().map(|k| (k.rank, k.name.as_str())).collect();
    assert_eq!(order, [(1, "a"), (1, "z"), (2, "a"), (3, "c")]);

    let mut map: HashMap<Gc<u32>, &str> = HashMap::new();
    map.insert(Gc::new(1), "one");
    assert_eq!(map.get(&1), Some(&"one"));
}

#[test]
fn pointer_formatting_prints_the_value_address() {
    let untracked = Gc::new(42u64);
    let tracked = key(1, "p");
    assert_eq!(format!("{untracked:p}"), format!("{:p}", &*untracked));
    assert_eq!(format!("{tracked:p}"), format!("{:p}", &*tracked));
    assert_eq!(
        format!("{tracked:p}"),
        format!("{:p}", Gc::as_ptr(&tracked))
    );
    assert_eq!(format!("{untracked:p}"), format!("{:p}", untracked.clone()));
    assert_ne!(format!("{untracked:p}"), format!("{:p}", Gc::new(42u64)));
    assert!(std::ptr::eq(Gc::as_ptr(&tracked), &*tracked));
}

#[test]
fn default_and_from() {
    assert_eq!(*Gc::<u32>::default(), 0);
    assert_eq!(*Gc::<String>::default(), "");
    assert_eq!(*Gc::<Key>::default(), Key::default());
    assert!(Gc::<RefCell<Vec<Gc<Key>>>>::default().borrow().is_empty());
    let from: Gc<String> = String::from("moved in").into();
    assert_eq!(*from, "moved in");
    let k: Gc<Key> = Gc::from(Key {
        rank: 9,
        name: "nine".into(),
    });
    assert_eq!(k.rank, 9);
    assert_eq!(Gc::strong_count(&k), 1);
}

#[test]
fn deref_as_ref_and_borrow_reach_the_value() {
    use std::borrow::Borrow;
    let s = Gc::new(String::from("abc"));
    assert_eq!(s.len(), 3); // auto-deref method call
    let r: &String = s.as_ref();
    let b: &String = s.borrow();
    assert!(std::ptr::eq(r, b) && std::ptr::eq(r, &*s));
    assert_eq!(Gc::try_get(&s).map(String::as_str), Some("abc"));
}

#[test]
fn clone_adds_a_strong_reference_to_the_same_object() {
    let a = key(1, "a");
    assert_eq!(Gc::strong_count(&a), 1);
    let b = a.clone();
    let c = b.clone();
    assert!(Gc::ptr_eq(&a, &b) && Gc::ptr_eq(&b, &c));
    assert_eq!(Gc::strong_count(&a), 3);
    assert_eq!(Gc::strong_count(&c), 3);
    drop(b);
    assert_eq!(Gc::strong_count(&a), 2);
    drop(c);
    assert_eq!(Gc::strong_count(&a), 1);

    let u = Gc::new(5u8);
    let many: Vec<_> = (0..10).map(|_| u.clone()).collect();
    assert_eq!(Gc::strong_count(&u), 11);
    drop(many);
    assert_eq!(Gc::strong_count(&u), 1);
}

#[test]
fn ptr_eq_is_identity() {
    let a = Gc::new(1);
    let same = a.clone();
    let equal = Gc::new(1);
    assert!(Gc::ptr_eq(&a, &same));
    assert!(!Gc::ptr_eq(&a, &equal));
    assert_eq!(a, equal);
    let ka = key(0, "");
    assert!(Gc::ptr_eq(&ka, &ka.clone()));
    assert!(!Gc::ptr_eq(&ka, &Gc::default()));
}

#[test]
fn strong_and_weak_counts() {
    let a = key(1, "a");
    let weak: Vec<Weak<Key>> = (0..3).map(|_| Gc::downgrade(&a)).collect();
    assert_eq!((Gc::strong_count(&a), Gc::weak_count(&a)), (1, 3));
    let b = a.clone();
    assert_eq!((Gc::strong_count(&b), Gc::weak_count(&b)), (2, 3));
    drop(weak);
    assert_eq!((Gc::strong_count(&b), Gc::weak_count(&b)), (2, 0));
    let upgraded = Gc::downgrade(&a).upgrade().unwrap();
    assert_eq!(Gc::strong_count(&upgraded), 3);
    assert_eq!(Gc::weak_count(&upgraded), 0);
}

#[test]
fn handles_are_pointer_sized() {
    assert_eq!(size_of::<Gc<u8>>(), size_of::<usize>());
    assert_eq!(size_of::<Gc<Key>>(), size_of::<usize>());
    assert_eq!(size_of::<Option<Gc<u8>>>(), size_of::<usize>());
    assert_eq!(size_of::<Option<Gc<Key>>>(), size_of::<usize>());
    assert_eq!(
        size_of::<Option<Gc<RefCell<Vec<Gc<Key>>>>>>(),
        size_of::<usize>()
    );
}

#[test]
fn tracked_and_untracked_handles_behave_the_same() {
    let t = key(1, "t");
    let u = Gc::new(1u32);
    assert!(Gc::is_tracked(&t));
    assert!(!Gc::is_tracked(&u));
    assert_eq!(Gc::generation(&u), None);
    assert!(Gc::generation(&t).is_some());
    assert!(!Gc::is_finalized(&t) && !Gc::is_finalized(&u));
}
