// The system SQLite library (libsqlite3-dev on Debian, installed by scripts/setup), plus what Swift cannot import
// from its macros.
#ifndef CSQLITE_H
#define CSQLITE_H

#include <sqlite3.h>

/// SQLITE_TRANSIENT (a macro casting -1 to a function pointer, which Swift cannot import): SQLite copies the bound
/// value before the bind call returns.
static inline sqlite3_destructor_type csqlite_transient(void) { return SQLITE_TRANSIENT; }

#endif
