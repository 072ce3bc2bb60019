//! SCIM resources as JSON documents, and what the protocol does to them: reading a request's
//! attributes into lintel's canonical form (names as the schema spells them, types checked,
//! what lintel does not keep dropped), applying PATCH operations (RFC 7644 §3.5.2),
//! evaluating filters (§3.4.2.2), choosing the attributes returned (§3.9) and the version
//! an `ETag` names (§3.14). Pure: no I/O.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, PatchPath, ValFilter};
use scim_v2::models::others::{OperationTarget, PatchOperation};
use std::collections::HashSet;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ScimError;
use super::schema::{Attr, EXTERNAL_ID, GROUP, Kind, USER, find};

/// A request's attributes in canonical form. Unknown and read-only attributes are left out
/// (RFC 7644 §3.3: a server ignores what it does not keep); `null` unassigns (§3.5.1);
/// the booleans some providers send as strings (`"False"`) are read as booleans.
pub fn canonical(input: &Map<String, Value>, attrs: &[Attr]) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for (key, value) in input {
        let name = strip_urn(key);
        let attr = if name.eq_ignore_ascii_case(EXTERNAL_ID.name) { Some(&EXTERNAL_ID) } else { find(attrs, name) };
        let Some(attr) = attr.filter(|a| !a.read_only) else { continue };
        if let Some(v) = attribute(attr, value)? {
            out.insert(attr.name.to_owned(), v);
        }
    }
    Ok(out)
}

/// A key without the core schema's URN (`urn:...:User:userName` is `userName`).
fn strip_urn(key: &str) -> &str {
    [USER, GROUP].iter().find_map(|urn| key.strip_prefix(urn).and_then(|k| k.strip_prefix(':'))).unwrap_or(key)
}

fn attribute(attr: &Attr, value: &Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items = match value {
            Value::Array(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = single(attr, item)? {
                out.push(v);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    single(attr, value)
}

fn single(attr: &Attr, value: &Value) -> Result<Option<Value>, ScimError> {
    let wrong = |what: &str| ScimError::invalid_value(format!("{} must be {what}", attr.name));
    match (attr.kind, value) {
        (_, Value::Null) => Ok(None),
        (Kind::String | Kind::Reference, Value::String(s)) => {
            if s.len() > 1024 || s.chars().any(char::is_control) {
                return Err(wrong("text of at most 1024 characters, without control characters"));
            }
            Ok(Some(Value::String(s.clone())))
        }
        (Kind::Boolean, Value::Bool(b)) => Ok(Some(Value::Bool(*b))),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
        (Kind::Complex, Value::Object(map)) => {
            let v = canonical(map, attr.subs)?;
            Ok((!v.is_empty()).then_some(Value::Object(v)))
        }
        (Kind::String | Kind::Reference, _) => Err(wrong("a string")),
        (Kind::Boolean, _) => Err(wrong("a boolean")),
        (Kind::Complex, _) => Err(wrong("an object")),
    }
}

/// Applies PATCH operations to a resource's stored attributes, in order; the caller
/// writes the result only when every operation applied.
pub fn patch(doc: &mut Map<String, Value>, ops: &[PatchOperation], attrs: &[Attr]) -> Result<(), ScimError> {
    for op in ops {
        match op {
            PatchOperation::Add(OperationTarget::WithoutPath { value }) => {
                for (name, v) in canonical(value, attrs)? {
                    add(doc, named(attrs, &name), v);
                }
            }
            PatchOperation::Replace(OperationTarget::WithoutPath { value }) => {
                for (name, v) in canonical(value, attrs)? {
                    replace(doc, named(attrs, &name), v);
                }
            }
            PatchOperation::Add(OperationTarget::WithPath { path, value }) => {
                let value = value.as_ref().ok_or_else(|| ScimError::invalid_value("add needs a value"))?;
                at_path(doc, path, attrs, Edit::Add(value))?;
            }
            PatchOperation::Replace(OperationTarget::WithPath { path, value }) => {
                let value = value.as_ref().ok_or_else(|| ScimError::invalid_value("replace needs a value"))?;
                at_path(doc, path, attrs, Edit::Replace(value))?;
            }
            PatchOperation::Remove { path, value } => at_path(doc, path, attrs, Edit::Remove(value.as_ref()))?,
        }
    }
    Ok(())
}

enum Edit<'a> {
    Add(&'a Value),
    Replace(&'a Value),
    /// Entra ID removes members by value: `{"op": "remove", "path": "members", "value": [{"value": id}]}`.
    Remove(Option<&'a Value>),
}

/// The attribute a path names: `externalId`, or one of the schema's that a request may set;
/// `None` for one lintel does not keep but a provider may well send (a core attribute such
/// as `title`, or an extension's such as the enterprise `department`): like an unknown
/// attribute in a body, the operation is ignored, so that a provider's change of a
/// department does not hold back the deactivation in the same request.
fn lookup<'a>(attrs: &'a [Attr], path: &AttrPath) -> Result<Option<&'a Attr>, ScimError> {
    let name = strip_urn(&path.name);
    if name.eq_ignore_ascii_case(EXTERNAL_ID.name) {
        return Ok(Some(&EXTERNAL_ID));
    }
    match find(attrs, name) {
        Some(a) if a.read_only => Err(ScimError::mutability(format!("{} is read-only", a.name))),
        Some(a) => Ok(Some(a)),
        None if path.uri.as_deref().is_some_and(|uri| uri != USER && uri != GROUP) => Ok(None),
        None if name.contains(':') => Ok(None),
        None if NOT_KEPT.iter().any(|n| n.eq_ignore_ascii_case(name)) => Ok(None),
        None => Err(ScimError::invalid_path(format!("no attribute {name:?}"))),
    }
}

/// The core User attributes (RFC 7643 §4.1) lintel does not keep.
const NOT_KEPT: &[&str] = &[
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "password",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    "roles",
    "x509Certificates",
];

/// An attribute by name, for the operations without a path (their names are canonical).
fn named<'a>(attrs: &'a [Attr], name: &str) -> &'a Attr {
    if name == EXTERNAL_ID.name { &EXTERNAL_ID } else { find(attrs, name).expect("canonical names are the schema's") }
}

fn sub_attr<'a>(attr: &'a Attr, name: &str) -> Result<&'a Attr, ScimError> {
    find(attr.subs, name).ok_or_else(|| ScimError::invalid_path(format!("{} has no sub-attribute {name:?}", attr.name)))
}

fn add(doc: &mut Map<String, Value>, attr: &Attr, value: Value) {
    match (attr.multi, attr.kind, doc.get_mut(attr.name), value) {
        (true, _, Some(Value::Array(items)), Value::Array(new)) => {
            let mut seen: HashSet<String> = items.iter().map(identity).collect();
            items.extend(new.into_iter().filter(|v| seen.insert(identity(v))));
        }
        (false, Kind::Complex, Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
        (_, _, _, value) => {
            doc.insert(attr.name.to_owned(), value);
        }
    }
}

fn replace(doc: &mut Map<String, Value>, attr: &Attr, value: Value) {
    // A complex attribute's sub-attributes not given are left as they are (RFC 7644 §3.5.2.3).
    match (attr.multi, attr.kind, doc.get_mut(attr.name), value) {
        (false, Kind::Complex, Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
        (_, _, _, value) => {
            doc.insert(attr.name.to_owned(), value);
        }
    }
}

fn at_path(doc: &mut Map<String, Value>, path: &PatchPath, attrs: &[Attr], edit: Edit) -> Result<(), ScimError> {
    match path {
        PatchPath::Attr(path @ AttrPath { sub_attr: None, .. }) => {
            let Some(attr) = lookup(attrs, path)? else { return Ok(()) };
            match edit {
                Edit::Add(v) | Edit::Replace(v) => {
                    let Some(v) = attribute(attr, v)? else {
                        doc.remove(attr.name);
                        return Ok(());
                    };
                    if matches!(edit, Edit::Add(_)) { add(doc, attr, v) } else { replace(doc, attr, v) }
                }
                Edit::Remove(None) => {
                    if attr.required {
                        return Err(ScimError::mutability(format!("{} is required", attr.name)));
                    }
                    doc.remove(attr.name);
                }
                Edit::Remove(Some(v)) => {
                    let gone = attribute(attr, v)?.map(|v| match v {
                        Value::Array(items) => items,
                        one => vec![one],
                    });
                    if let (Some(gone), Some(Value::Array(items))) = (gone, doc.get_mut(attr.name)) {
                        let gone: HashSet<String> = gone.iter().map(identity).collect();
                        items.retain(|item| !gone.contains(&identity(item)));
                    }
                    drop_if_empty(doc, attr.name);
                }
            }
        }
        PatchPath::Attr(path @ AttrPath { sub_attr: Some(sub), .. }) => {
            let Some(attr) = lookup(attrs, path)? else { return Ok(()) };
            let sub = sub_attr(attr, sub)?;
            match doc.get_mut(attr.name) {
                // On a multi-valued attribute, the sub-attribute of every value.
                Some(Value::Array(items)) => {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        set_sub(item, sub, &edit)?;
                    }
                }
                Some(Value::Object(item)) => set_sub(item, sub, &edit)?,
                _ if matches!(edit, Edit::Remove(_)) => {}
                _ if attr.multi => return Err(ScimError::no_target(format!("{} has no values", attr.name))),
                _ => {
                    let mut item = Map::new();
                    set_sub(&mut item, sub, &edit)?;
                    doc.insert(attr.name.to_owned(), Value::Object(item));
                }
            }
            drop_if_empty(doc, attr.name);
        }
        PatchPath::Value(vp) => {
            let Some(attr) = lookup(attrs, &vp.attr)? else { return Ok(()) };
            let sub = vp.sub_attr.as_deref().map(|s| sub_attr(attr, s)).transpose()?;
            if !matches!(edit, Edit::Remove(_))
                && let Some(new) = implied_value(attr, vp, sub, &edit)?
                && !doc
                    .get(attr.name)
                    .and_then(Value::as_array)
                    .is_some_and(|items| items.iter().any(|i| val_filter(&vp.filter, i, attr.subs)))
            {
                // Entra ID sets `emails[type eq "work"].value` whether or not a work email exists yet.
                add(doc, attr, Value::Array(vec![new]));
                return Ok(());
            }
            let Some(Value::Array(items)) = doc.get_mut(attr.name) else {
                return match edit {
                    Edit::Remove(_) => Ok(()),
                    _ => Err(ScimError::no_target(format!("no value of {} matches", attr.name))),
                };
            };
            let matching = |item: &Value| val_filter(&vp.filter, item, attr.subs);
            match (&edit, sub) {
                (Edit::Remove(_), None) => items.retain(|item| !matching(item)),
                (_, sub) => {
                    let mut hit = false;
                    for item in items.iter_mut().filter(|i| matching(i)) {
                        hit = true;
                        let Some(obj) = item.as_object_mut() else { continue };
                        match (sub, &edit) {
                            (Some(sub), edit) => set_sub(obj, sub, edit)?,
                            (None, Edit::Add(v) | Edit::Replace(v)) => {
                                let Some(Value::Object(new)) = single(attr, v)? else {
                                    return Err(ScimError::invalid_value(format!("{} takes objects", attr.name)));
                                };
                                if matches!(edit, Edit::Replace(_)) {
                                    *obj = new;
                                } else {
                                    obj.extend(new);
                                }
                            }
                            (None, Edit::Remove(_)) => unreachable!("handled above"),
                        }
                    }
                    if !hit && !matches!(edit, Edit::Remove(_)) {
                        return Err(ScimError::no_target(format!("no value of {} matches", attr.name)));
                    }
                }
            }
            drop_if_empty(doc, attr.name);
        }
    }
    Ok(())
}

/// The value an add or replace through `attr[sub eq "v"].sub2` makes when no value
/// matches: `{sub: v, sub2: value}`. Only for a filter of one equality.
fn implied_value(
    attr: &Attr,
    vp: &scim_v2::filter::PatchValuePath,
    sub: Option<&Attr>,
    edit: &Edit,
) -> Result<Option<Value>, ScimError> {
    let (Some(sub), Edit::Add(_) | Edit::Replace(_)) = (sub, edit) else { return Ok(None) };
    let ValFilter::Attr(AttrExp::Comparison(key, CompareOp::Eq, CompValue::Str(wanted))) = &vp.filter else {
        return Ok(None);
    };
    let Some(key) = find(attr.subs, &key.name) else { return Ok(None) };
    let mut item = Map::new();
    item.insert(key.name.to_owned(), Value::String(wanted.clone()));
    set_sub(&mut item, sub, edit)?;
    Ok(Some(Value::Object(item)))
}

fn set_sub(item: &mut Map<String, Value>, sub: &Attr, edit: &Edit) -> Result<(), ScimError> {
    match edit {
        Edit::Add(v) | Edit::Replace(v) => match single(sub, v)? {
            Some(v) => item.insert(sub.name.to_owned(), v),
            None => item.remove(sub.name),
        },
        Edit::Remove(_) => item.remove(sub.name),
    };
    Ok(())
}

fn drop_if_empty(doc: &mut Map<String, Value>, name: &str) {
    let empty = match doc.get(name) {
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        _ => false,
    };
    if empty {
        doc.remove(name);
    }
}

/// What makes a value of a multi-valued attribute the same one: its `value` when it has one
/// (a member named by id), else the whole value. Sets of these keep adding and removing
/// many members linear.
fn identity(v: &Value) -> String {
    match v.get("value") {
        Some(x) => format!("value:{x}"),
        None => format!("whole:{v}"),
    }
}

/// Whether a resource (with its `id`, `meta` and read-only attributes) matches a filter.
pub fn matches(filter: &Filter, resource: &Value, attrs: &[Attr]) -> bool {
    match filter {
        Filter::Attr(exp) => attr_exp(exp, resource, attrs),
        Filter::ValuePath(vp) => {
            let subs = find(attrs, strip_urn(&vp.attr.name)).map_or(&[][..], |a| a.subs);
            match get_ci(resource, strip_urn(&vp.attr.name)) {
                Some(Value::Array(items)) => items.iter().any(|v| val_filter(&vp.filter, v, subs)),
                Some(one) => val_filter(&vp.filter, one, subs),
                None => false,
            }
        }
        Filter::Not(f) => !matches(f, resource, attrs),
        Filter::And(fs) => fs.iter().all(|f| matches(f, resource, attrs)),
        Filter::Or(fs) => fs.iter().any(|f| matches(f, resource, attrs)),
    }
}

fn val_filter(filter: &ValFilter, item: &Value, subs: &[Attr]) -> bool {
    match filter {
        ValFilter::Attr(exp) => attr_exp(exp, item, subs),
        ValFilter::Not(f) => !val_filter(f, item, subs),
        ValFilter::And(fs) => fs.iter().all(|f| val_filter(f, item, subs)),
        ValFilter::Or(fs) => fs.iter().any(|f| val_filter(f, item, subs)),
    }
}

/// The values a path names in a resource (several for a multi-valued attribute); a
/// multi-valued complex attribute without a sub-attribute compares by its `value`.
fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(v) = get_ci(resource, strip_urn(&path.name)) else { return Vec::new() };
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    items
        .into_iter()
        .filter_map(|item| match (&path.sub_attr, item) {
            (Some(sub), item) => get_ci(item, sub),
            (None, Value::Object(_)) => get_ci(item, "value"),
            (None, item) => Some(item),
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn get_ci<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn case_exact(path: &AttrPath, attrs: &[Attr]) -> bool {
    let name = strip_urn(&path.name);
    if name.eq_ignore_ascii_case("id") || name.eq_ignore_ascii_case(EXTERNAL_ID.name) {
        return true;
    }
    let Some(attr) = find(attrs, name) else { return false };
    match &path.sub_attr {
        Some(sub) => find(attr.subs, sub).is_some_and(|s| s.case_exact),
        None if attr.kind == Kind::Complex => find(attr.subs, "value").is_some_and(|s| s.case_exact),
        None => attr.case_exact,
    }
}

fn attr_exp(exp: &AttrExp, resource: &Value, attrs: &[Attr]) -> bool {
    match exp {
        AttrExp::Present(path) => values(resource, path).iter().any(|v| match v {
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        }),
        AttrExp::Comparison(path, op, wanted) => {
            let exact = case_exact(path, attrs);
            let found = values(resource, path);
            // `ne` holds when no value equals (an absent attribute included).
            if *op == CompareOp::Ne {
                return !found.iter().any(|v| compare(v, &CompareOp::Eq, wanted, exact));
            }
            found.iter().any(|v| compare(v, op, wanted, exact))
        }
    }
}

fn compare(have: &Value, op: &CompareOp, wanted: &CompValue, exact: bool) -> bool {
    match (have, wanted) {
        (Value::String(h), CompValue::Str(w)) => {
            let (h, w) = if exact { (h.clone(), w.clone()) } else { (h.to_lowercase(), w.to_lowercase()) };
            match op {
                CompareOp::Eq => h == w,
                CompareOp::Ne => h != w,
                CompareOp::Co => h.contains(&w),
                CompareOp::Sw => h.starts_with(&w),
                CompareOp::Ew => h.ends_with(&w),
                // Timestamps are RFC 3339 in UTC, so they order as text.
                CompareOp::Gt => h > w,
                CompareOp::Ge => h >= w,
                CompareOp::Lt => h < w,
                CompareOp::Le => h <= w,
            }
        }
        (Value::Bool(h), CompValue::True) => matches!(op, CompareOp::Eq) == *h,
        (Value::Bool(h), CompValue::False) => matches!(op, CompareOp::Eq) != *h,
        (Value::Null, CompValue::Null) => matches!(op, CompareOp::Eq),
        _ => false,
    }
}

/// The attributes returned (RFC 7644 §3.9): those asked for, or all but those excluded;
/// `id` and `schemas` always. Names may carry a sub-attribute (`name.givenName`).
pub fn project(resource: Value, attributes: &[String], excluded: &[String]) -> Value {
    let Value::Object(mut map) = resource else { return resource };
    let split = |s: &String| {
        let s = strip_urn(s.trim());
        match s.split_once('.') {
            Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
            None => (s.to_owned(), None),
        }
    };
    let always = |k: &str| k == "id" || k == "schemas";
    if !attributes.is_empty() {
        let wanted: Vec<_> = attributes.iter().map(split).collect();
        map.retain(|k, v| {
            if always(k) {
                return true;
            }
            let subs: Vec<_> = wanted.iter().filter(|(a, _)| a.eq_ignore_ascii_case(k)).map(|(_, s)| s).collect();
            if subs.is_empty() {
                return false;
            }
            if subs.iter().all(|s| s.is_some()) {
                keep_subs(v, &subs.iter().filter_map(|s| s.as_deref()).collect::<Vec<_>>());
            }
            true
        });
    } else if !excluded.is_empty() {
        for (a, sub) in excluded.iter().map(split) {
            let Some(key) = map.keys().find(|k| k.eq_ignore_ascii_case(&a)).cloned() else { continue };
            if always(&key) {
                continue;
            }
            match sub {
                None => {
                    map.remove(&key);
                }
                Some(sub) => {
                    if let Some(v) = map.get_mut(&key) {
                        each_object(v, |o| o.retain(|k, _| !k.eq_ignore_ascii_case(&sub)));
                    }
                }
            }
        }
    }
    Value::Object(map)
}

fn keep_subs(v: &mut Value, subs: &[&str]) {
    each_object(v, |o| o.retain(|k, _| subs.iter().any(|s| s.eq_ignore_ascii_case(k))));
}

fn each_object(v: &mut Value, mut f: impl FnMut(&mut Map<String, Value>)) {
    match v {
        Value::Object(o) => f(o),
        Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(f),
        _ => {}
    }
}

/// A weak entity tag over a resource's content: it changes when any attribute does.
pub fn version(resource: &Value) -> String {
    let digest = Sha256::digest(resource.to_string().as_bytes());
    format!("W/\"{}\"", hex::encode(&digest[..12]))
}

#[cfg(test)]
mod tests {
    use scim_v2::models::others::PatchOp;
    use serde_json::json;

    use super::*;
    use crate::scim::schema::{GROUP_ATTRS, USER_ATTRS};

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn apply(mut d: Map<String, Value>, ops: Value, attrs: &[Attr]) -> Result<Map<String, Value>, ScimError> {
        let op: PatchOp =
            serde_json::from_value(json!({"schemas": [crate::scim::schema::PATCH_OP], "Operations": ops}))
                .expect("a PatchOp");
        patch(&mut d, &op.operations, attrs)?;
        Ok(d)
    }

    #[test]
    fn requests_are_read_by_the_schemas_names_and_types() {
        let input = doc(json!({
            "USERNAME": "ann", "Active": "False", "password": "x", "groups": [{"value": "g"}], "id": "forged",
            "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "Ann",
            "emails": {"value": "a@b.c"}, "name": {"GivenName": "Ann", "nickname": "x"}, "externalId": "e1",
            "phoneNumbers": null
        }));
        let d = canonical(&input, USER_ATTRS).unwrap();
        assert_eq!(
            Value::Object(d),
            json!({"userName": "ann", "active": false, "displayName": "Ann", "emails": [{"value": "a@b.c"}],
                   "name": {"givenName": "Ann"}, "externalId": "e1"})
        );
        for bad in
            [json!({"userName": 1}), json!({"active": "maybe"}), json!({"name": "Ann"}), json!({"userName": "a\u{0}b"})]
        {
            let e = canonical(&doc(bad.clone()), USER_ATTRS).unwrap_err();
            assert_eq!((e.status, e.scim_type), (400, Some("invalidValue")), "{bad}");
        }
    }

    #[test]
    fn patches_take_the_shapes_okta_and_entra_send() {
        let d = doc(json!({"userName": "ann", "active": true, "name": {"givenName": "Ann", "familyName": "L"},
                           "emails": [{"type": "work", "value": "a@x.org", "primary": true}]}));
        // Okta: replace with a value object, no path.
        let d =
            apply(d, json!([{"op": "replace", "value": {"active": false, "name": {"familyName": "K"}}}]), USER_ATTRS)
                .unwrap();
        assert_eq!(d["active"], json!(false));
        assert_eq!(d["name"], json!({"givenName": "Ann", "familyName": "K"}), "sub-attributes not given stay");
        // Entra ID: paths, string booleans, value filters (an add that makes the value it names).
        let d = apply(
            d,
            json!([
                {"op": "Replace", "path": "active", "value": "True"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@x.org"},
                {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "h@x.org"},
                {"op": "Remove", "path": "name.familyName"}
            ]),
            USER_ATTRS,
        )
        .unwrap();
        assert_eq!(d["active"], json!(true));
        assert_eq!(
            d["emails"],
            json!([{"type": "work", "value": "b@x.org", "primary": true}, {"type": "home", "value": "h@x.org"}])
        );
        assert_eq!(d["name"], json!({"givenName": "Ann"}));
        let d = apply(d, json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]), USER_ATTRS).unwrap();
        assert_eq!(d["emails"], json!([{"type": "home", "value": "h@x.org"}]));
    }

    #[test]
    fn members_are_added_and_removed_by_value() {
        let d = doc(json!({"displayName": "Staff", "members": [{"value": "a"}, {"value": "b"}]}));
        let d =
            apply(d, json!([{"op": "add", "path": "members", "value": [{"value": "b"}, {"value": "c"}]}]), GROUP_ATTRS)
                .unwrap();
        assert_eq!(d["members"], json!([{"value": "a"}, {"value": "b"}, {"value": "c"}]), "no member twice");
        let d = apply(d, json!([{"op": "remove", "path": "members[value eq \"a\"]"}]), GROUP_ATTRS).unwrap();
        let d = apply(d, json!([{"op": "Remove", "path": "members", "value": [{"value": "c"}]}]), GROUP_ATTRS).unwrap();
        assert_eq!(d["members"], json!([{"value": "b"}]));
        let d = apply(d, json!([{"op": "remove", "path": "members"}]), GROUP_ATTRS).unwrap();
        assert!(!d.contains_key("members"));
    }

    #[test]
    fn bad_operations_are_refused_with_their_scim_type() {
        let d = doc(json!({"userName": "ann", "emails": [{"type": "work", "value": "a@x.org"}]}));
        let cases = [
            (json!([{"op": "replace", "path": "nosuch", "value": 1}]), "invalidPath"),
            (json!([{"op": "replace", "path": "name.nosuch", "value": "x"}]), "invalidPath"),
            (json!([{"op": "remove", "path": "userName"}]), "mutability"),
            (json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]), "mutability"),
            (json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h@x.org"}}]), "noTarget"),
            (json!([{"op": "replace", "path": "active", "value": [1]}]), "invalidValue"),
        ];
        for (ops, scim_type) in cases {
            let e = apply(d.clone(), ops.clone(), USER_ATTRS).unwrap_err();
            assert_eq!(e.scim_type, Some(scim_type), "{ops}: {e}");
        }
    }

    #[test]
    fn filters_compare_as_the_schema_says() {
        let user = json!({"id": "P1", "userName": "Ann@Example.org", "externalId": "AbC", "active": true,
                          "emails": [{"type": "work", "value": "ann@example.org"}],
                          "meta": {"lastModified": "2026-12-07T10:00:00.000Z"}});
        let yes = |f: &str| matches(&f.parse().unwrap(), &user, USER_ATTRS);
        assert!(yes(r#"userName eq "ann@example.org""#), "userName ignores case");
        assert!(!yes(r#"externalId eq "abc""#), "externalId is exact");
        assert!(yes(r#"externalId eq "AbC" and active eq true"#));
        assert!(yes(r#"userName sw "ann" or userName eq "x""#));
        assert!(yes(r#"emails[type eq "work" and value co "example"]"#));
        assert!(yes(r#"emails co "example""#), "a multi-valued attribute compares by its values");
        assert!(yes(r#"emails.value ew ".org""#));
        assert!(yes("displayName ne \"x\""), "ne holds for an absent attribute");
        assert!(!yes("displayName pr"));
        assert!(yes("not (displayName pr)"));
        assert!(yes(r#"meta.lastModified gt "2026-12-07T09:00:00.000Z""#));
    }

    #[test]
    fn projections_keep_id_and_schemas() {
        let user = json!({"schemas": ["s"], "id": "1", "userName": "a", "name": {"givenName": "A", "familyName": "B"},
                          "emails": [{"value": "a@b.c", "type": "work"}], "meta": {}});
        let only = project(user.clone(), &["name.givenName".into(), "EMAILS.value".into()], &[]);
        assert_eq!(
            only,
            json!({"schemas": ["s"], "id": "1", "name": {"givenName": "A"}, "emails": [{"value": "a@b.c"}]})
        );
        let without = project(user, &[], &["meta".into(), "name".into(), "emails.type".into(), "id".into()]);
        assert_eq!(without, json!({"schemas": ["s"], "id": "1", "userName": "a", "emails": [{"value": "a@b.c"}]}));
    }
}
