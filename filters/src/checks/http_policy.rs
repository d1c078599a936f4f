//! The `[http]` section compiled for decisions: the route table, the allowed origins, the
//! response header rules and the body limits.

use crate::checks::headers::HeaderRules;
use crate::checks::origin::Origins;
use crate::protocol::routes::{RouteClass, RouteTable};

/// The `[http]` section compiled for decisions.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// The route table.
    pub routes: RouteTable,
    /// Allowed browser origins.
    pub origins: Origins,
    /// Response header rules.
    pub headers: HeaderRules,
    limits: clawguard_policies::BodyLimits,
    /// Tools of the gateway's HTTP deny list allowed anyway (`http.reenable_tools`).
    pub reenable_tools: Vec<String>,
    /// Largest `data:` URL in an inference body.
    pub max_data_url_bytes: usize,
}

impl HttpPolicy {
    /// Compiles `[http]` (and the listeners, whose origins are clawguard's own).
    pub fn new(policy: &clawguard_policies::Policy) -> Self {
        let http = &policy.http;
        HttpPolicy {
            routes: RouteTable::new(http),
            origins: Origins::new(&policy.server.listen, &policy.tls.listen, &http.allowed_origins),
            headers: HeaderRules::new(http),
            limits: http.max_body_bytes.clone(),
            reenable_tools: http.reenable_tools.clone(),
            max_data_url_bytes: http.max_data_url_bytes,
        }
    }

    /// The body limit of a route class.
    pub fn body_limit(&self, class: RouteClass) -> usize {
        match class {
            RouteClass::ToolsInvoke => self.limits.tools_invoke,
            RouteClass::ChatCompletions | RouteClass::Responses => self.limits.inference,
            RouteClass::Embeddings => self.limits.embeddings,
            RouteClass::Hooks => self.limits.hooks,
            _ => self.limits.other,
        }
    }
}

