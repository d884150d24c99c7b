//! Opening the library: `dlopen`, the v2 API check, one CPU engine and the user-scratchpad
//! attribute every primitive is created with.

use std::ptr;
use std::sync::Mutex;

use libloading::Library;

use super::{check, OneDnn};
use crate::engine::kernels::gemm::onednn_sys::*;

impl OneDnn {
    /// Opens `name` (a file name or path) and creates the engine; the error says why not.
    pub(super) fn load(name: &str) -> Result<OneDnn, String> {
        let amx = crate::engine::kernels::runtime::amx::request_permission();
        // SAFETY: loading runs the library's static initialisers (oneDNN, libgomp, libstdc++),
        // which have no preconditions on the caller.
        let lib = unsafe { Library::new(name) }.map_err(|e| format!("cannot load {name}: {e}"))?;
        // SAFETY: `dnnl_version` is exported by every oneDNN; we check the major version before
        // trusting the v2 signatures of the other symbols.
        let version = unsafe {
            let f = lib
                .get::<unsafe extern "C" fn() -> *const dnnl_version_t>(b"dnnl_version\0")
                .map_err(|e| format!("{name} is not oneDNN: {e}"))?;
            &*f()
        };
        if version.major != 2 {
            return Err(format!(
                "{name} is oneDNN {}.{}, only the v2 API is supported",
                version.major, version.minor
            ));
        }
        // SAFETY: the library is oneDNN 2.x (checked above); `lib` is stored next to `api` in the
        // same struct and never dropped before it.
        let api = unsafe { Api::load(&lib) }?;
        let mut engine = ptr::null_mut();
        // SAFETY: `engine` is a valid out-pointer.
        check("dnnl_engine_create", unsafe {
            (api.engine_create)(&mut engine, DNNL_CPU, 0)
        })
        .map_err(|e| e.to_string())?;
        let mut attr = ptr::null_mut();
        // SAFETY: `attr` is a valid out-pointer; the created attribute is valid for the setter.
        unsafe {
            check(
                "dnnl_primitive_attr_create",
                (api.primitive_attr_create)(&mut attr),
            )
            .map_err(|e| e.to_string())?;
            check(
                "dnnl_primitive_attr_set_scratchpad_mode",
                (api.primitive_attr_set_scratchpad_mode)(attr, DNNL_SCRATCHPAD_MODE_USER),
            )
            .map_err(|e| e.to_string())?;
        }
        let runtime = match version.cpu_runtime {
            DNNL_RUNTIME_OMP => "OpenMP",
            DNNL_RUNTIME_TBB => "TBB",
            DNNL_RUNTIME_SEQ => "sequential",
            DNNL_RUNTIME_THREADPOOL => "threadpool",
            _ => "unknown runtime",
        };
        // SAFETY: both are argument-less queries of the loaded library.
        let (isa, threads) = unsafe {
            (
                (api.get_effective_cpu_isa)(),
                api.omp_get_max_threads.map(|f| f()),
            )
        };
        let threads = threads.map_or(String::new(), |t| format!(", {t} threads"));
        let amx = if amx { ", AMX permitted" } else { "" };
        let describe = format!(
            "oneDNN {}.{}.{} ({runtime}{threads}, isa {}{amx})",
            version.major,
            version.minor,
            version.patch,
            isa_name(isa)
        );
        Ok(OneDnn {
            api,
            engine,
            attr_user_scratchpad: attr,
            streams: Mutex::new(Vec::new()),
            describe,
            isa,
            _lib: lib,
        })
    }
}
