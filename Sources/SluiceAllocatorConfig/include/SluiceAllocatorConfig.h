#ifndef SLUICE_ALLOCATOR_CONFIG_H
#define SLUICE_ALLOCATOR_CONFIG_H

/// jemalloc's options for Sluice's executables (see allocator_config.c): read by jemalloc at start-up, before the
/// MALLOC_CONF environment variable, which can still override them.
extern const char *malloc_conf;

#endif
