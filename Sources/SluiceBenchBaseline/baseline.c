#include "SluiceBenchBaseline.h"
