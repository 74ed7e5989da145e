package isotp

// Test helpers of package isotp for the external tests (package isotp_test).
var (
	TsharkPath  = tsharkPath
	CheckTshark = checkTshark
)
