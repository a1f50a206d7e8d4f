/* Word lists for the demo generator. Invented combinations of common names and places: no list
 * entry, and no combination the generator makes, describes a real person or GP practice. */
#include "demo_internal.h"

#define LIST(a) { a, sizeof(a) / sizeof((a)[0]) }

static const char *const surnames[] = {
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson",
    "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall",
    "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill",
    "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen",
    "James", "Scott", "Phillips", "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths",
    "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy",
    "Miller", "Cox", "Richards", "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh",
    "Begum", "Wilkinson", "Foster", "Chapman", "Powell", "Webb", "Rogers", "Gray", "Mason", "Ali",
    "Hunt", "Hussain", "Campbell", "Matthews", "Owen", "Palmer", "Holmes", "Mills", "Barnes", "Knight",
    "Lloyd", "Butler", "Russell", "Barker", "Fisher", "Stevens", "Jenkins", "Murray", "Dixon", "Harvey",
    "Ahmed", "Kaur", "Rahman", "Shah", "Mistry", "Chowdhury", "Okafor", "Adeyemi", "Mensah", "Osei",
    "Boateng", "Campbell-Brown", "Kowalski", "Nowak", "Wiśniewski", "Chen", "Wong", "Nguyen", "O'Brien",
    "O'Neill", "MacDonald", "Stewart", "Reid", "Fraser", "Llewellyn", "Pritchard", "Gallagher", "Doherty",
    "Akhtar", "Iqbal", "Sharma", "Gill", "Sandhu", "Mahmood", "Nwosu", "Asante", "Francis", "Henry",
};

/* Female, born before 1960 */
static const char *const f0[] = {
    "Margaret", "Patricia", "Susan", "Mary", "Jean", "Christine", "Linda", "Janet", "Elizabeth", "Barbara",
    "Carol", "Sandra", "Ann", "Brenda", "Pauline", "Valerie", "Sheila", "Maureen", "Doreen", "Joan",
    "Dorothy", "Irene", "Gillian", "Kathleen", "Rita", "Eileen", "Hazel", "Jennifer", "Parveen", "Bridget",
    "Gwen", "Shirley",
};
/* Male, born before 1960 */
static const char *const m0[] = {
    "John", "David", "Michael", "Peter", "Robert", "Anthony", "Brian", "Alan", "William", "James",
    "Richard", "Kenneth", "Roger", "Keith", "Colin", "Christopher", "Geoffrey", "Terence", "Raymond",
    "Derek", "Barry", "Graham", "Trevor", "Dennis", "Malcolm", "Gordon", "Ronald", "Stanley", "Harold",
    "Mohammed", "Gurdev", "Patrick", "Desmond", "Winston",
};
/* Female, born 1960-1989 */
static const char *const f1[] = {
    "Sarah", "Claire", "Emma", "Nicola", "Lisa", "Helen", "Rachel", "Karen", "Joanne", "Michelle",
    "Louise", "Kelly", "Rebecca", "Amanda", "Victoria", "Samantha", "Julie", "Catherine", "Gemma", "Laura",
    "Kirsty", "Donna", "Nadia", "Ayesha", "Priya", "Agnieszka", "Joanna", "Ngozi", "Abena", "Siobhan",
    "Siân", "Fiona",
};
/* Male, born 1960-1989 */
static const char *const m1[] = {
    "Paul", "Mark", "David", "Andrew", "Richard", "Christopher", "James", "Simon", "Michael", "Matthew",
    "Stephen", "Lee", "Darren", "Daniel", "Jason", "Gareth", "Craig", "Wayne", "Neil", "Ian",
    "Stuart", "Jonathan", "Mohammed", "Imran", "Rajesh", "Sanjay", "Tomasz", "Marcin", "Chukwuemeka",
    "Kwame", "Seán", "Dafydd", "Rhys", "Ciaran",
};
/* Female, born 1990 or later */
static const char *const f2[] = {
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Sophia", "Grace",
    "Freya", "Florence", "Emily", "Ella", "Poppy", "Evie", "Charlotte", "Sophie", "Chloe", "Jessica",
    "Zoë", "Hannah", "Maryam", "Aisha", "Zara", "Amira", "Anaya", "Maja", "Zuzanna", "Niamh",
    "Aoife", "Ffion", "Eilidh", "Ama", "Chiamaka",
};
/* Male, born 1990 or later */
static const char *const m2[] = {
    "Oliver", "Jack", "Harry", "George", "Noah", "Charlie", "Jacob", "Alfie", "Freddie", "Oscar",
    "Leo", "Arthur", "Muhammad", "Thomas", "William", "James", "Joshua", "Ethan", "Archie", "Theo",
    "Isaac", "Logan", "Ryan", "Kai", "Rohan", "Arjun", "Yusuf", "Ibrahim", "Jakub", "Oisín",
    "Tomos", "Callum", "Kofi", "Adebayo",
};

static const char *const streets[] = {
    "High Street", "Church Road", "Station Road", "Victoria Road", "Green Lane", "Manor Road",
    "Park Road", "Queens Road", "Kings Road", "The Crescent", "Mill Lane", "New Road", "School Lane",
    "London Road", "York Road", "Albert Road", "Grange Road", "Springfield Road", "Windsor Road",
    "Chapel Street", "North Street", "Orchard Close", "Meadow View", "Beech Avenue", "Oak Drive",
    "Elm Grove", "Cedar Close", "Willow Way", "Ashfield Road", "Highfield Road", "St John's Road",
    "Railway Terrace", "Brook Street", "Castle Street", "Market Place", "Hawthorn Avenue",
    "Rowan Close", "Heather Drive", "Primrose Hill", "Lime Tree Walk",
};

static const char *const practice_prefix[] = {
    "Riverside", "Parkview", "Oakwood", "Meadowbank", "Hillside", "Church View", "Beechwood",
    "Millbrook", "Greenfield", "Elmwood", "Westgate", "Castle", "Abbey", "Bridge Street",
    "Station Road", "Valley", "Lakeside", "Willowbrook", "Kingsway", "Priory", "Orchard",
    "Ashgrove", "St Mary's", "Cedar House", "Brookside", "Fairfield", "Northgate", "Southside",
    "Eastfield", "Moorland",
};

static const char *const practice_suffix[] = {
    "Medical Practice", "Surgery", "Health Centre", "Medical Centre", "Group Practice", "Family Practice",
};

const demo__list demo__surnames = LIST(surnames);
const demo__list demo__given[3][2] = {
    { LIST(f0), LIST(m0) },
    { LIST(f1), LIST(m1) },
    { LIST(f2), LIST(m2) },
};
const demo__list demo__streets = LIST(streets);
const demo__list demo__practice_prefix = LIST(practice_prefix);
const demo__list demo__practice_suffix = LIST(practice_suffix);

/* Real towns with their real postcode areas; the postcodes built from them are random and may or
 * may not exist. */
const demo__town demo__towns[] = {
    { "Leeds", "West Yorkshire", "LS", 29 },
    { "Bristol", "City of Bristol", "BS", 16 },
    { "Sheffield", "South Yorkshire", "S", 36 },
    { "Manchester", "Greater Manchester", "M", 40 },
    { "Birmingham", "West Midlands", "B", 38 },
    { "Norwich", "Norfolk", "NR", 30 },
    { "Exeter", "Devon", "EX", 39 },
    { "York", "North Yorkshire", "YO", 32 },
    { "Derby", "Derbyshire", "DE", 24 },
    { "Leicester", "Leicestershire", "LE", 19 },
    { "Nottingham", "Nottinghamshire", "NG", 25 },
    { "Newcastle upon Tyne", "Tyne and Wear", "NE", 15 },
    { "Plymouth", "Devon", "PL", 9 },
    { "Reading", "Berkshire", "RG", 31 },
    { "Oxford", "Oxfordshire", "OX", 4 },
    { "Cambridge", "Cambridgeshire", "CB", 5 },
    { "Bradford", "West Yorkshire", "BD", 15 },
    { "Coventry", "West Midlands", "CV", 6 },
    { "Southampton", "Hampshire", "SO", 19 },
    { "Liverpool", "Merseyside", "L", 38 },
    { "Hull", "East Riding of Yorkshire", "HU", 9 },
    { "Stoke-on-Trent", "Staffordshire", "ST", 6 },
    { "Wolverhampton", "West Midlands", "WV", 14 },
    { "Preston", "Lancashire", "PR", 5 },
    { "Luton", "Bedfordshire", "LU", 4 },
    { "Ipswich", "Suffolk", "IP", 9 },
    { "Gloucester", "Gloucestershire", "GL", 4 },
    { "Lincoln", "Lincolnshire", "LN", 6 },
    { "Carlisle", "Cumbria", "CA", 3 },
    { "Bath", "Somerset", "BA", 2 },
};
const size_t demo__n_towns = sizeof(demo__towns) / sizeof(demo__towns[0]);
