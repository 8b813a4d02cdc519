package smart_test

import (
	"fmt"
	"strings"

	"github.com/smartauth/smartauth/server/smart"
)

// A client registered for patient-level read access asks for more than it
// may have; the person withholds offline access on the consent page.
func ExampleGrant() {
	requested := strings.Fields("launch/patient openid fhirUser offline_access patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Condition.cruds")
	allowed := strings.Fields("launch/patient openid fhirUser offline_access patient/*.rs")
	approved := strings.Fields("launch/patient openid fhirUser patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Condition.cruds")

	granted, dropped := smart.Grant(requested, allowed, approved)
	fmt.Println("granted:", strings.Join(granted, " "))
	fmt.Println("dropped:", strings.Join(dropped, " "))
	// Output:
	// granted: launch/patient openid fhirUser patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory
	// dropped: offline_access patient/Condition.cruds
}

func ExampleDescribe() {
	s, err := smart.Parse("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
	if err != nil {
		panic(err)
	}
	fmt.Println(smart.Describe(s))
	// Output: Read and search observation records for the current patient (only where category is laboratory)
}
