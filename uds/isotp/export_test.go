package isotp

// Test helpers of package isotp for the external tests (package isotp_test).
var CheckTshark = checkTshark
