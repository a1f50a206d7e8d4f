/* NHS number check (NHS Data Dictionary; docs/domain.md section 3.3): exactly 10 ASCII digits,
 * no spaces or separators (the "3 3 4" grouping is for display only). Digits 1-9 are weighted
 * 10..2 and summed; check = 11 - (sum mod 11); 11 -> 0; 10 -> the number is invalid; otherwise the
 * number is valid iff check equals digit 10. */
#include "bevan/fhir.h"

bool bv_nhs_number_valid(const char *s)
{
    if (!s) return false;
    int sum = 0;
    for (int i = 0; i < 10; i++) {
        if (s[i] < '0' || s[i] > '9') return false; /* also stops at a short string's NUL */
        if (i < 9) sum += (s[i] - '0') * (10 - i);
    }
    if (s[10] != '\0') return false;
    int check = 11 - sum % 11;
    if (check == 11) check = 0;
    if (check == 10) return false;
    return check == s[9] - '0';
}
