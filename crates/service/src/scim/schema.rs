//! The attributes lintel keeps for SCIM users and groups (RFC 7643 §4), and the discovery
//! documents built from them (`/Schemas`, `/ResourceTypes`, `/ServiceProviderConfig`). An
//! identity provider and a compliance checker read these to learn what lintel stores, so
//! they list exactly what a resource round-trips, nothing more.

use serde_json::{Value, json};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SERVICE_PROVIDER_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// The most resources one list answers.
pub const MAX_RESULTS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Complex,
    Reference,
}

/// One attribute of a resource, as RFC 7643 §7 describes attributes.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    /// Set by lintel, never by a request (ignored when sent).
    pub read_only: bool,
    /// Compared as is in filters (else without regard to case).
    pub case_exact: bool,
    pub unique: bool,
    pub subs: &'static [Attr],
    pub reference_types: &'static [&'static str],
    pub description: &'static str,
}

const fn text(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind: Kind::String,
        multi: false,
        required: false,
        read_only: false,
        case_exact: false,
        unique: false,
        subs: &[],
        reference_types: &[],
        description,
    }
}

const fn flag(name: &'static str, description: &'static str) -> Attr {
    Attr { kind: Kind::Boolean, ..text(name, description) }
}

const NAME_PARTS: &[Attr] = &[
    text("formatted", "The full name, formatted for display."),
    text("familyName", "The family name."),
    text("givenName", "The given name."),
    text("middleName", "The middle name."),
    text("honorificPrefix", "A title before the name."),
    text("honorificSuffix", "A suffix after the name."),
];

const EMAIL_PARTS: &[Attr] = &[
    text("value", "The address; the primary one (else the first) is the person's email in lintel."),
    text("display", "How the address is shown."),
    text("type", "work, home or other."),
    flag("primary", "The person's preferred address."),
];

const PHONE_PARTS: &[Attr] = &[
    text("value", "The number; the primary one (else the first) is the person's phone in lintel when it is one."),
    text("display", "How the number is shown."),
    text("type", "work, mobile, home or other."),
    flag("primary", "The person's preferred number."),
];

const USER_GROUP_PARTS: &[Attr] = &[
    Attr { read_only: true, case_exact: true, ..text("value", "The group's id.") },
    Attr { read_only: true, kind: Kind::Reference, reference_types: &["Group"], ..text("$ref", "The group's URI.") },
    Attr { read_only: true, ..text("display", "The group's name.") },
];

pub const USER_ATTRS: &[Attr] = &[
    Attr { required: true, unique: true, ..text("userName", "The identity provider's unique name for the person.") },
    Attr { kind: Kind::Complex, subs: NAME_PARTS, ..text("name", "The person's name in parts.") },
    text("displayName", "The name lintel shows; else the formatted name, else given and family name."),
    flag("active", "false suspends the person and revokes what they hold (their cards, secrets and keys)."),
    Attr { kind: Kind::Complex, multi: true, subs: EMAIL_PARTS, ..text("emails", "Email addresses.") },
    Attr { kind: Kind::Complex, multi: true, subs: PHONE_PARTS, ..text("phoneNumbers", "Phone numbers.") },
    Attr {
        kind: Kind::Complex,
        multi: true,
        read_only: true,
        subs: USER_GROUP_PARTS,
        ..text("groups", "The groups the person is in (changed through the groups).")
    },
];

const MEMBER_PARTS: &[Attr] = &[
    Attr { case_exact: true, ..text("value", "The member's id (a User's).") },
    Attr { kind: Kind::Reference, reference_types: &["User"], ..text("$ref", "The member's URI.") },
];

pub const GROUP_ATTRS: &[Attr] = &[
    Attr { required: true, ..text("displayName", "The group's name in lintel.") },
    Attr { kind: Kind::Complex, multi: true, subs: MEMBER_PARTS, ..text("members", "The people in the group.") },
];

/// The common attributes every resource has besides its schema's (RFC 7643 §3.1).
pub const EXTERNAL_ID: Attr = Attr { case_exact: true, ..text("externalId", "The identity provider's own id.") };

/// An attribute of `attrs` by name, without regard to case (as SCIM's names compare).
pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn attribute_json(a: &Attr) -> Value {
    let mut v = json!({
        "name": a.name,
        "type": match a.kind { Kind::String => "string", Kind::Boolean => "boolean", Kind::Complex => "complex", Kind::Reference => "reference" },
        "multiValued": a.multi,
        "description": a.description,
        "required": a.required,
        "mutability": if a.read_only { "readOnly" } else { "readWrite" },
        "returned": "default",
    });
    if matches!(a.kind, Kind::String | Kind::Reference) {
        v["caseExact"] = json!(a.case_exact);
        v["uniqueness"] = json!(if a.unique { "server" } else { "none" });
    }
    if a.kind == Kind::Reference {
        v["referenceTypes"] = json!(a.reference_types);
    }
    if a.kind == Kind::Complex {
        v["subAttributes"] = a.subs.iter().map(attribute_json).collect();
    }
    v
}

fn schema_json(base: &str, id: &str, name: &str, description: &str, attrs: Vec<Value>) -> Value {
    json!({
        "schemas": [SCHEMA],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

/// Every schema lintel serves: User and Group with what lintel keeps, and the three the
/// discovery endpoints themselves follow (RFC 7643 §5-§7).
pub fn schemas(base: &str) -> Vec<Value> {
    let attrs = |a: &[Attr]| a.iter().map(attribute_json).collect::<Vec<_>>();
    let plain = |names: &[(&str, &str)]| -> Vec<Value> {
        names
            .iter()
            .map(|(n, t)| {
                json!({"name": n, "type": t, "multiValued": false, "required": false, "caseExact": false,
                "mutability": "readOnly", "returned": "default", "uniqueness": "none", "description": n})
            })
            .collect()
    };
    vec![
        schema_json(base, USER, "User", "A person in lintel.", attrs(USER_ATTRS)),
        schema_json(base, GROUP, "Group", "A lintel group; its members open what its grants open.", attrs(GROUP_ATTRS)),
        schema_json(
            base,
            SERVICE_PROVIDER_CONFIG,
            "ServiceProviderConfig",
            "What this service provider supports.",
            plain(&[("documentationUri", "reference")]),
        ),
        schema_json(
            base,
            RESOURCE_TYPE,
            "ResourceType",
            "A type of resource this service provider serves.",
            plain(&[("name", "string"), ("description", "string"), ("endpoint", "reference"), ("schema", "reference")]),
        ),
        schema_json(
            base,
            SCHEMA,
            "Schema",
            "The attributes of a resource.",
            plain(&[("name", "string"), ("description", "string")]),
        ),
    ]
}

pub fn resource_types(base: &str) -> Vec<Value> {
    let rt = |id: &str, endpoint: &str, schema: &str, description: &str| {
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": id,
            "name": id,
            "endpoint": endpoint,
            "description": description,
            "schema": schema,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")},
        })
    };
    vec![rt("User", "/Users", USER, "People"), rt("Group", "/Groups", GROUP, "Groups of people")]
}

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A lintel token with the scim scope: lintel token create --scope scim",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}
