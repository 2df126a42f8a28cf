/* SPDX-License-Identifier: MIT */
/* The passthrough test helpers moved to the test-support library. */
#include "support/pt_test.h"
