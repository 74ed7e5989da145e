package uds

import "fmt"

// NRC is a negative response code (ISO 14229-1 Annex A): the third byte of
// a negative response 7F <SID> <NRC>. An NRC is also an error, so a server
// handler refuses a request by returning one:
//
//	return nil, uds.RequestOutOfRange
type NRC byte

// The negative response codes of ISO 14229-1:2020 Annex A, table A.1.
const (
	GeneralReject                                    NRC = 0x10
	ServiceNotSupported                              NRC = 0x11
	SubFunctionNotSupported                          NRC = 0x12
	IncorrectMessageLengthOrInvalidFormat            NRC = 0x13
	ResponseTooLong                                  NRC = 0x14
	BusyRepeatRequest                                NRC = 0x21
	ConditionsNotCorrect                             NRC = 0x22
	RequestSequenceError                             NRC = 0x24
	NoResponseFromSubnetComponent                    NRC = 0x25
	FailurePreventsExecutionOfRequestedAction        NRC = 0x26
	RequestOutOfRange                                NRC = 0x31
	SecurityAccessDenied                             NRC = 0x33
	AuthenticationRequired                           NRC = 0x34
	InvalidKey                                       NRC = 0x35
	ExceededNumberOfAttempts                         NRC = 0x36
	RequiredTimeDelayNotExpired                      NRC = 0x37
	CertificateVerificationFailedInvalidTimePeriod   NRC = 0x50
	CertificateVerificationFailedInvalidSignature    NRC = 0x51
	CertificateVerificationFailedInvalidChainOfTrust NRC = 0x52
	CertificateVerificationFailedInvalidType         NRC = 0x53
	CertificateVerificationFailedInvalidFormat       NRC = 0x54
	CertificateVerificationFailedInvalidContent      NRC = 0x55
	CertificateVerificationFailedInvalidScope        NRC = 0x56
	CertificateVerificationFailedInvalidCertificate  NRC = 0x57
	OwnershipVerificationFailed                      NRC = 0x58
	ChallengeCalculationFailed                       NRC = 0x59
	SettingAccessRightsFailed                        NRC = 0x5A
	SessionKeyCreationDerivationFailed               NRC = 0x5B
	ConfigurationDataUsageFailed                     NRC = 0x5C
	DeAuthenticationFailed                           NRC = 0x5D
	UploadDownloadNotAccepted                        NRC = 0x70
	TransferDataSuspended                            NRC = 0x71
	GeneralProgrammingFailure                        NRC = 0x72
	WrongBlockSequenceCounter                        NRC = 0x73
	RequestCorrectlyReceivedResponsePending          NRC = 0x78
	SubFunctionNotSupportedInActiveSession           NRC = 0x7E
	ServiceNotSupportedInActiveSession               NRC = 0x7F
	RPMTooHigh                                       NRC = 0x81
	RPMTooLow                                        NRC = 0x82
	EngineIsRunning                                  NRC = 0x83
	EngineIsNotRunning                               NRC = 0x84
	EngineRunTimeTooLow                              NRC = 0x85
	TemperatureTooHigh                               NRC = 0x86
	TemperatureTooLow                                NRC = 0x87
	VehicleSpeedTooHigh                              NRC = 0x88
	VehicleSpeedTooLow                               NRC = 0x89
	ThrottlePedalTooHigh                             NRC = 0x8A
	ThrottlePedalTooLow                              NRC = 0x8B
	TransmissionRangeNotInNeutral                    NRC = 0x8C
	TransmissionRangeNotInGear                       NRC = 0x8D
	BrakeSwitchesNotClosed                           NRC = 0x8F
	ShifterLeverNotInPark                            NRC = 0x90
	TorqueConverterClutchLocked                      NRC = 0x91
	VoltageTooHigh                                   NRC = 0x92
	VoltageTooLow                                    NRC = 0x93
	ResourceTemporarilyNotAvailable                  NRC = 0x94
)

// ResponsePending is the short name of
// RequestCorrectlyReceivedResponsePending (0x78).
const ResponsePending = RequestCorrectlyReceivedResponsePending

// nrcNames holds the names ISO 14229-1 Annex A gives the codes.
var nrcNames = map[NRC]string{
	0x00:                                             "positiveResponse",
	GeneralReject:                                    "generalReject",
	ServiceNotSupported:                              "serviceNotSupported",
	SubFunctionNotSupported:                          "subFunctionNotSupported",
	IncorrectMessageLengthOrInvalidFormat:            "incorrectMessageLengthOrInvalidFormat",
	ResponseTooLong:                                  "responseTooLong",
	BusyRepeatRequest:                                "busyRepeatRequest",
	ConditionsNotCorrect:                             "conditionsNotCorrect",
	RequestSequenceError:                             "requestSequenceError",
	NoResponseFromSubnetComponent:                    "noResponseFromSubnetComponent",
	FailurePreventsExecutionOfRequestedAction:        "failurePreventsExecutionOfRequestedAction",
	RequestOutOfRange:                                "requestOutOfRange",
	SecurityAccessDenied:                             "securityAccessDenied",
	AuthenticationRequired:                           "authenticationRequired",
	InvalidKey:                                       "invalidKey",
	ExceededNumberOfAttempts:                         "exceededNumberOfAttempts",
	RequiredTimeDelayNotExpired:                      "requiredTimeDelayNotExpired",
	CertificateVerificationFailedInvalidTimePeriod:   "certificateVerificationFailedInvalidTimePeriod",
	CertificateVerificationFailedInvalidSignature:    "certificateVerificationFailedInvalidSignature",
	CertificateVerificationFailedInvalidChainOfTrust: "certificateVerificationFailedInvalidChainOfTrust",
	CertificateVerificationFailedInvalidType:         "certificateVerificationFailedInvalidType",
	CertificateVerificationFailedInvalidFormat:       "certificateVerificationFailedInvalidFormat",
	CertificateVerificationFailedInvalidContent:      "certificateVerificationFailedInvalidContent",
	CertificateVerificationFailedInvalidScope:        "certificateVerificationFailedInvalidScope",
	CertificateVerificationFailedInvalidCertificate:  "certificateVerificationFailedInvalidCertificate",
	OwnershipVerificationFailed:                      "ownershipVerificationFailed",
	ChallengeCalculationFailed:                       "challengeCalculationFailed",
	SettingAccessRightsFailed:                        "settingAccessRightsFailed",
	SessionKeyCreationDerivationFailed:               "sessionKeyCreationDerivationFailed",
	ConfigurationDataUsageFailed:                     "configurationDataUsageFailed",
	DeAuthenticationFailed:                           "deAuthenticationFailed",
	UploadDownloadNotAccepted:                        "uploadDownloadNotAccepted",
	TransferDataSuspended:                            "transferDataSuspended",
	GeneralProgrammingFailure:                        "generalProgrammingFailure",
	WrongBlockSequenceCounter:                        "wrongBlockSequenceCounter",
	RequestCorrectlyReceivedResponsePending:          "requestCorrectlyReceivedResponsePending",
	SubFunctionNotSupportedInActiveSession:           "subFunctionNotSupportedInActiveSession",
	ServiceNotSupportedInActiveSession:               "serviceNotSupportedInActiveSession",
	RPMTooHigh:                                       "rpmTooHigh",
	RPMTooLow:                                        "rpmTooLow",
	EngineIsRunning:                                  "engineIsRunning",
	EngineIsNotRunning:                               "engineIsNotRunning",
	EngineRunTimeTooLow:                              "engineRunTimeTooLow",
	TemperatureTooHigh:                               "temperatureTooHigh",
	TemperatureTooLow:                                "temperatureTooLow",
	VehicleSpeedTooHigh:                              "vehicleSpeedTooHigh",
	VehicleSpeedTooLow:                               "vehicleSpeedTooLow",
	ThrottlePedalTooHigh:                             "throttle/PedalTooHigh",
	ThrottlePedalTooLow:                              "throttle/PedalTooLow",
	TransmissionRangeNotInNeutral:                    "transmissionRangeNotInNeutral",
	TransmissionRangeNotInGear:                       "transmissionRangeNotInGear",
	BrakeSwitchesNotClosed:                           "brakeSwitch(es)NotClosed",
	ShifterLeverNotInPark:                            "shifterLeverNotInPark",
	TorqueConverterClutchLocked:                      "torqueConverterClutchLocked",
	VoltageTooHigh:                                   "voltageTooHigh",
	VoltageTooLow:                                    "voltageTooLow",
	ResourceTemporarilyNotAvailable:                  "resourceTemporarilyNotAvailable",
}

// Name returns the code's name as ISO 14229-1 Annex A writes it, such as
// "securityAccessDenied", or the name of the range a code without a name
// of its own belongs to.
func (n NRC) Name() string {
	if s, ok := nrcNames[n]; ok {
		return s
	}
	switch {
	case n >= 0x38 && n <= 0x4F:
		return "reservedByExtendedDataLinkSecurityDocument"
	case n >= 0x95 && n <= 0xEF:
		return "reservedForSpecificConditionsNotCorrect"
	case n >= 0xF0 && n <= 0xFE:
		return "vehicleManufacturerSpecificConditionsNotCorrect"
	}
	return "ISOSAEReserved"
}

// String returns the name and the code: "securityAccessDenied (0x33)".
func (n NRC) String() string { return fmt.Sprintf("%s (0x%02X)", n.Name(), byte(n)) }

// Error makes an NRC an error, so that server handlers can return one.
func (n NRC) Error() string { return "uds: " + n.String() }

// NegativeResponse is the error a client returns for a negative response
// 7F <SID> <NRC> from the ECU. Its Code is also matched by errors.Is:
//
//	if errors.Is(err, uds.SecurityAccessDenied) { ... }
type NegativeResponse struct {
	Service SID // the service that was refused
	Code    NRC
}

func (e *NegativeResponse) Error() string {
	return fmt.Sprintf("uds: %v refused: %s", e.Service, e.Code.String())
}

// Is reports whether target is the NRC e carries.
func (e *NegativeResponse) Is(target error) bool {
	n, ok := target.(NRC)
	return ok && n == e.Code
}
