//! Tenancy on the StoreAPI side: a request whose gRPC metadata names a tenant (`thanos-tenant`,
//! as `cairn query --query.enforce-tenancy` and Thanos Query send it) is answered from that
//! tenant's series only. The tenant's equality matcher is added to the request's own, so a
//! query layer that forwards a tenant cannot widen it with other matchers (a regex over the
//! tenant label included). Requests without the metadata are answered as before.

use proto::thanos::{label_matcher, LabelMatcher};
use tonic::Request;

/// The gRPC metadata key naming the tenant.
pub const TENANT_METADATA: &str = "thanos-tenant";

/// The external label carrying the tenant, unless configured (`--receive.tenant-label-name`'s
/// default, and what Thanos' stores assume).
pub const DEFAULT_TENANT_LABEL: &str = "tenant_id";

/// The request's message, with the tenant's matcher added to `matchers` when its metadata
/// names a tenant.
pub fn confined<T>(
    request: Request<T>,
    tenant_label: &str,
    matchers: impl FnOnce(&mut T) -> &mut Vec<LabelMatcher>,
) -> T {
    let tenant = request
        .metadata()
        .get(TENANT_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut message = request.into_inner();
    if let Some(tenant) = tenant {
        matchers(&mut message).push(LabelMatcher {
            r#type: label_matcher::Type::Eq as i32,
            name: tenant_label.to_string(),
            value: tenant,
        });
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::thanos::LabelNamesRequest;

    #[test]
    fn the_tenant_in_the_metadata_becomes_a_matcher() {
        let mut request = Request::new(LabelNamesRequest::default());
        request
            .metadata_mut()
            .insert(TENANT_METADATA, "team-a".parse().unwrap());
        let r = confined(request, "tenant_id", |r| &mut r.matchers);
        assert_eq!(
            r.matchers,
            [LabelMatcher {
                r#type: label_matcher::Type::Eq as i32,
                name: "tenant_id".into(),
                value: "team-a".into(),
            }]
        );
        let r = confined(
            Request::new(LabelNamesRequest::default()),
            "tenant_id",
            |r| &mut r.matchers,
        );
        assert!(r.matchers.is_empty());
    }
}
