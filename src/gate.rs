//! One tower layer for everything that looks at a request before the services
//! do: authentication, the in-flight bound and request metrics each say only
//! what to do with a request ([`Admission`]); this module does the plumbing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

/// A decision about each request before it reaches the services.
pub trait Admission: Send + Sync + 'static {
    /// What an admitted request carries until its response is ready (a permit,
    /// a start time, or nothing).
    type Ticket: Send + 'static;

    /// Admits the request, or refuses it with the status it is answered with.
    fn admit<B>(&self, request: &http::Request<B>) -> Result<Self::Ticket, Status>;

    /// Called with an admitted request's response before it is sent, and
    /// returns the response to send: an admission that follows the call to
    /// its end (a stream's last message) moves its ticket into the body. By
    /// default the ticket is dropped here, when the response headers are
    /// ready. A request that failed below gRPC drops its ticket unanswered.
    fn respond(
        &self,
        ticket: Self::Ticket,
        response: http::Response<Body>,
    ) -> http::Response<Body> {
        drop(ticket);
        response
    }
}

/// Puts an [`Admission`] in front of the services.
#[derive(Debug)]
pub struct GateLayer<A> {
    admission: Arc<A>,
}

impl<A> GateLayer<A> {
    pub fn new(admission: Arc<A>) -> Self {
        GateLayer { admission }
    }
}

impl<A> Clone for GateLayer<A> {
    fn clone(&self) -> Self {
        GateLayer {
            admission: Arc::clone(&self.admission),
        }
    }
}

impl<S, A> Layer<S> for GateLayer<A> {
    type Service = Gate<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            admission: Arc::clone(&self.admission),
        }
    }
}

#[derive(Debug)]
pub struct Gate<S, A> {
    inner: S,
    admission: Arc<A>,
}

impl<S: Clone, A> Clone for Gate<S, A> {
    fn clone(&self) -> Self {
        Gate {
            inner: self.inner.clone(),
            admission: Arc::clone(&self.admission),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, A, B> Service<http::Request<B>> for Gate<S, A>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    A: Admission,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.admission.admit(&request) {
            Ok(ticket) => {
                let admission = Arc::clone(&self.admission);
                let response = self.inner.call(request);
                Box::pin(async move { Ok(admission.respond(ticket, response.await?)) })
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}
